"""The FCM HTTP v1 sandbox and its OAuth token endpoint, through the real ``pyfcm`` SDK.

pyfcm authenticates with google-auth's service-account flow against the sandbox's
``/token`` (the service-account JSON's ``token_uri``) and posts to
``FCM_END_POINT_BASE`` = ``{sandbox}/v1/projects``.

Two pyfcm behaviours would make these tests slow, and matter to any caller:
``send_request`` sleeps ``Retry-After`` seconds and retries (without limit), and
its default ``HTTPAdapter`` retries 502/503 ten times with urllib3 backoff. The
tests use ``SingleShotFCM`` (one HTTP request per call) unless they demonstrate
those behaviours with ``time.sleep`` patched out.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import jwt
import pytest
import requests
from google.oauth2 import service_account
from pyfcm import FCMNotification
from pyfcm.errors import (
    AuthenticationError,
    FCMNotRegisteredError,
    FCMSenderIdMismatchError,
    FCMServerError,
    InvalidDataError,
)
from requests.adapters import HTTPAdapter

from tests.support.sandbox import REPO_ROOT, SandboxProcess

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
NAME_RE = re.compile(r"^projects/notifyhub-sandbox/messages/0:\d+%[0-9a-f]{16}$")


class SingleShotFCM(FCMNotification):
    """pyfcm without its in-call sleeping on Retry-After: one request per call."""

    def send_request(self, payload: Any = None, timeout: Any = None) -> requests.Response:
        return self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False,
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with SandboxProcess(
        base_env, SANDBOX_SENDGRID_CALLBACK_URL="", SANDBOX_TWILIO_STATUS_CALLBACK_URL=""
    ) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _clean(sandbox: SandboxProcess) -> None:
    sandbox.reset()


def make_client(sandbox: SandboxProcess, cls: type[FCMNotification] = SingleShotFCM, **kwargs: Any) -> Any:
    assert sandbox.fcm_service_account_file
    kwargs.setdefault("adapter", HTTPAdapter(max_retries=0))
    client = cls(service_account_file=sandbox.fcm_service_account_file, project_id=sandbox.fcm_project_id,
                 **kwargs)
    client.FCM_END_POINT_BASE = sandbox.fcm_endpoint_base  # before the first send
    return client


@pytest.fixture(scope="module")
def fcm(sandbox: SandboxProcess) -> Any:
    return make_client(sandbox)


def raw_send(fcm: Any, **params: Any) -> requests.Response:
    """One send through pyfcm's authenticated session, returning the raw response."""
    return fcm.send_request(fcm.parse_payload(**params), 5)


def error_of(response: requests.Response) -> dict[str, Any]:
    return dict(response.json()["error"])


# -- success ----------------------------------------------------------------------------


def test_notify_is_accepted_and_stored(sandbox: SandboxProcess, fcm: Any) -> None:
    result = fcm.notify(
        fcm_token="device-token-1",
        notification_title="Your order shipped",
        notification_body="Arrives Tuesday",
        data_payload={"order_id": "o-42", "notifyhub_delivery_id": "d-1"},
        android_config={"priority": "high", "ttl": "3600s"},
        apns_config={"headers": {"apns-priority": "10"}},
    )
    assert NAME_RE.match(result["name"]), result

    [stored] = sandbox.messages(provider="fcm")
    assert stored["name"] == result["name"]
    assert stored["message_id"] == result["name"].rsplit("/", 1)[1]
    assert stored["channel"] == "push"
    assert stored["to"] == stored["token"] == "device-token-1"
    assert (stored["subject"], stored["text"]) == ("Your order shipped", "Arrives Tuesday")
    assert stored["data"] == {"order_id": "o-42", "notifyhub_delivery_id": "d-1"}
    assert stored["android"] == {"priority": "high", "ttl": "3600s"}
    assert stored["apns"] == {"headers": {"apns-priority": "10"}}
    assert stored["status"] == "accepted"
    assert sandbox.messages(message_id=result["name"]) == [stored]

    stats = sandbox.stats()
    fcm_stats = stats["by_provider"]["fcm"]
    assert fcm_stats["by_status"] == {"200": 1}
    assert fcm_stats["callbacks"]["events_sent"] == 0  # FCM has no delivery receipts
    time.sleep(0.3)
    assert sandbox.stats()["callbacks"]["pending"] == 0


def test_plain_sdk_redirection_points(sandbox: SandboxProcess) -> None:
    """Stock FCMNotification: FCM_END_POINT_BASE + the account's token_uri are enough."""
    assert sandbox.fcm_service_account_file
    info = json.loads(Path(sandbox.fcm_service_account_file).read_text())
    assert info["token_uri"] == f"{sandbox.url}/token"

    client = FCMNotification(service_account_file=sandbox.fcm_service_account_file, project_id="ignored")
    client.FCM_END_POINT_BASE = sandbox.fcm_endpoint_base
    # pyfcm prefers the service account's project_id over the explicit one.
    assert client.fcm_end_point == f"{sandbox.url}/v1/projects/notifyhub-sandbox/messages:send"
    assert NAME_RE.match(client.notify(fcm_token="device-2", notification_title="Hi")["name"])
    assert sandbox.stats()["by_provider"]["fcm"]["tokens_issued"] == 1


def test_topic_condition_and_data_only(sandbox: SandboxProcess, fcm: Any) -> None:
    fcm.notify(topic_name="news", notification_title="Breaking")
    fcm.notify(topic_condition="'a' in topics && 'b' in topics", notification_body="x")
    fcm.notify(fcm_token="device-3", data_payload={"kind": "sync"})
    topic, condition, data_only = sandbox.messages(provider="fcm")
    assert (topic["to"], topic["target_type"]) == ("/topics/news", "topic")
    assert condition["target_type"] == "condition"
    assert data_only["notification"] is None
    assert data_only["data"] == {"kind": "sync"}


def test_dry_run_is_validated_but_not_stored(sandbox: SandboxProcess, fcm: Any) -> None:
    result = fcm.notify(fcm_token="device-4", notification_title="t", dry_run=True)
    assert result == {"name": "projects/notifyhub-sandbox/messages/fake_message_id"}
    assert sandbox.messages() == []


# -- reserved tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status", "status_name", "error_code", "exception"),
    [
        ("unregistered-1", 404, "NOT_FOUND", "UNREGISTERED", FCMNotRegisteredError),
        ("invalid-1", 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", InvalidDataError),
        ("quota-1", 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", FCMServerError),
        ("unavailable-1", 503, "UNAVAILABLE", "UNAVAILABLE", FCMServerError),
        ("internal-1", 500, "INTERNAL", "INTERNAL", FCMServerError),
        ("mismatch-1", 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", FCMSenderIdMismatchError),
    ],
)
def test_reserved_tokens(
    sandbox: SandboxProcess,
    fcm: Any,
    token: str,
    status: int,
    status_name: str,
    error_code: str,
    exception: type[Exception],
) -> None:
    response = raw_send(fcm, fcm_token=token, notification_title="t")
    assert response.status_code == status
    error = error_of(response)
    assert (error["code"], error["status"]) == (status, status_name)
    assert error["details"][0] == {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": error_code,
    }
    if token.startswith("invalid"):
        assert "registration token" in error["message"]
    if token.startswith("unregistered"):
        assert error["message"] == "Requested entity was not found."
    if token.startswith("quota"):
        assert response.headers["Retry-After"] == "60"
    else:
        assert "Retry-After" not in response.headers

    with pytest.raises(exception):  # how pyfcm's notify() surfaces it
        fcm.notify(fcm_token=token, notification_title="t")
    assert sandbox.messages() == []


def test_stock_pyfcm_sleeps_on_retry_after(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """FCMNotification.send_request sleeps Retry-After seconds, then retries (forever)."""
    slept: list[float] = []

    class Slept(Exception):
        pass

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:
            raise Slept

    client = make_client(sandbox, FCMNotification)
    monkeypatch.setattr(time, "sleep", fake_sleep)
    with pytest.raises(Slept):
        client.notify(fcm_token="quota-2", notification_title="t")
    monkeypatch.undo()
    assert slept == [60, 60]
    assert sandbox.stats()["by_provider"]["fcm"]["by_status"] == {"429": 2}


def test_stock_pyfcm_adapter_retries_503(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyfcm's default HTTPAdapter: urllib3 Retry(backoff_factor=1, status_forcelist=[502, 503])
    retries 10 times (about 8 minutes of backoff), then requests raises RetryError."""
    slept: list[float] = []
    client = FCMNotification(service_account_file=sandbox.fcm_service_account_file)
    client.FCM_END_POINT_BASE = sandbox.fcm_endpoint_base
    monkeypatch.setattr(time, "sleep", slept.append)
    with pytest.raises(requests.exceptions.RetryError):
        client.notify(fcm_token="unavailable-2", notification_title="t")
    monkeypatch.undo()
    assert slept == [2, 4, 8, 16, 32, 64, 120, 120, 120]
    assert sandbox.stats()["by_provider"]["fcm"]["by_status"] == {"503": 11}


# -- validation ------------------------------------------------------------------------


def test_data_values_must_be_strings(fcm: Any) -> None:
    response = raw_send(fcm, fcm_token="device-5", data_payload={"count": 3})
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"] == "Invalid value at 'message.data[0].value' (TYPE_STRING), 3"
    assert error["details"][1] == {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.data[0].value", "description": error["message"]}],
    }
    with pytest.raises(InvalidDataError, match="TYPE_STRING"):
        fcm.notify(fcm_token="device-5", data_payload={"count": 3})


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"notification": {"title": "t"}}, "Recipient of the message is not set."),
        ({"token": "a", "topic": "b"}, "oneof field 'target' is already set"),
        ({"token": "a", "colour": "red"}, 'Unknown name "colour"'),
        ({"token": "a", "data": {"from": "x"}}, "Invalid data payload key: from"),
        ({"token": "a", "android": {"ttl": "1 hour"}}, "message.android.ttl"),
        ({"topic": "not a topic!"}, "Request contains an invalid argument."),
        ({"token": "a", "data": {"blob": "x" * 5000}}, "Android message is too big"),
    ],
)
def test_invalid_messages(sandbox: SandboxProcess, fcm: Any, message: dict, expected: str) -> None:
    session = fcm.requests_session  # carries pyfcm's Bearer token
    response = session.post(fcm.fcm_end_point, data=json.dumps({"message": message}), timeout=5)
    assert response.status_code == 400
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert expected in error["message"]
    assert error["details"][0]["errorCode"] == "INVALID_ARGUMENT"
    assert sandbox.messages() == []


# -- authentication ---------------------------------------------------------------------


def test_send_needs_an_issued_bearer_token(sandbox: SandboxProcess, fcm: Any) -> None:
    url = fcm.fcm_end_point
    body = json.dumps({"message": {"token": "device-6"}})
    for headers, reason in (
        ({}, "CREDENTIALS_MISSING"),
        ({"Authorization": "Bearer ya29.made-up"}, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
        ({"Authorization": "key=AAAA-legacy-server-key"}, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
    ):
        response = requests.post(url, data=body, headers=headers, timeout=5)
        assert response.status_code == 401
        error = error_of(response)
        assert error["status"] == "UNAUTHENTICATED"
        assert error["details"][0]["reason"] == reason

    wrong_project = fcm.fcm_end_point.replace("/notifyhub-sandbox/", "/someone-else/")
    response = fcm.requests_session.post(wrong_project, data=body, timeout=5)
    assert (response.status_code, error_of(response)["status"]) == (403, "PERMISSION_DENIED")

    class Unauthenticated(SingleShotFCM):
        def request_headers(self) -> dict[str, str]:
            return {"Content-Type": "application/json", "Authorization": "Bearer nope"}

    client = make_client(sandbox, Unauthenticated)
    with pytest.raises(AuthenticationError):
        client.notify(fcm_token="device-6", notification_title="t")


def test_expired_access_token(sandbox: SandboxProcess) -> None:
    """401 ACCESS_TOKEN_EXPIRED: stock pyfcm fetches a new token and resends; a subclass that
    overrides send_request (to stop the sleeping) loses that and gets AuthenticationError."""
    assert sandbox.fcm_service_account_file
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with SandboxProcess(
        base_env,
        smtp_port=0,
        SANDBOX_SENDGRID_CALLBACK_URL="",
        SANDBOX_TWILIO_STATUS_CALLBACK_URL="",
        SANDBOX_FCM_TOKEN_TTL_S="1",
    ) as short:
        stock, single = make_client(short, FCMNotification), make_client(short)
        stock.notify(fcm_token="device-10", notification_title="t")
        single.notify(fcm_token="device-10", notification_title="t")
        time.sleep(1.1)
        assert NAME_RE.match(stock.notify(fcm_token="device-10", notification_title="t")["name"])
        response = raw_send(single, fcm_token="device-10", notification_title="t")
        assert response.status_code == 401
        assert error_of(response)["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
        with pytest.raises(AuthenticationError):
            single.notify(fcm_token="device-10", notification_title="t")
        assert short.stats()["by_provider"]["fcm"]["tokens_issued"] == 3


def test_token_endpoint_verifies_assertions(sandbox: SandboxProcess, tmp_path: Path) -> None:
    assert sandbox.fcm_service_account_file
    info = json.loads(Path(sandbox.fcm_service_account_file).read_text())
    token_url = f"{sandbox.url}/token"
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

    def assertion(key: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": info["client_email"], "aud": "https://oauth2.googleapis.com/token",
                   "scope": SCOPE, "iat": now, "exp": now + 3600, **claims}
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": info["private_key_id"]})

    good = requests.post(token_url, data={"grant_type": grant, "assertion": assertion(info["private_key"])},
                         timeout=5)
    assert good.status_code == 200
    body = good.json()
    assert (body["expires_in"], body["token_type"]) == (3600, "Bearer")
    assert body["access_token"].startswith("ya29.")

    other_file = tmp_path / "other.json"
    assert run_cli("fcm-service-account", "--out", str(other_file)).returncode == 0
    other_key = json.loads(other_file.read_text())["private_key"]
    now, key = int(time.time()), info["private_key"]
    for bad, description in (
        (assertion(other_key), "Invalid JWT Signature."),
        (assertion(key, aud="https://evil.test/token"), "Failed audience check"),
        (assertion(key, iat=now - 7200, exp=now - 3600), "short-lived token"),
        (assertion(key, iat=now, exp=now + 7200), "short-lived token"),
        (assertion(key, iss="x@y.iam.gserviceaccount.com"), "account not found"),
        ("not-a-jwt", "Invalid JWT"),
    ):
        response = requests.post(token_url, data={"grant_type": grant, "assertion": bad}, timeout=5)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert description in response.json()["error_description"]

    response = requests.post(token_url, data={"grant_type": "client_credentials"}, timeout=5)
    assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")

    # google-auth itself, as pyfcm drives it
    creds = service_account.Credentials.from_service_account_file(
        sandbox.fcm_service_account_file, scopes=[SCOPE]
    )
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token and creds.token.startswith("ya29.")

    # A key the sandbox does not know: pyfcm wraps google-auth's RefreshError in InvalidDataError.
    info["private_key"] = other_key
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(info))
    client = SingleShotFCM(service_account_file=str(forged), adapter=HTTPAdapter(max_retries=0))
    client.FCM_END_POINT_BASE = sandbox.fcm_endpoint_base
    with pytest.raises(InvalidDataError, match="invalid_grant"):
        client.notify(fcm_token="device-7", notification_title="t")
    assert sandbox.stats()["by_provider"]["fcm"]["token_errors"] >= 6


# -- control -----------------------------------------------------------------------------


def test_injected_failures_in_fcm_shape(sandbox: SandboxProcess, fcm: Any) -> None:
    sandbox.control(provider="fcm", fail_next=1, fail_status=429, retry_after=9)
    response = raw_send(fcm, fcm_token="device-8", notification_title="t")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "9"
    assert error_of(response)["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    assert raw_send(fcm, fcm_token="device-8", notification_title="t").status_code == 200


def test_down_resets_connections(sandbox: SandboxProcess, fcm: Any) -> None:
    sandbox.control(provider="fcm", down=True)
    with pytest.raises(requests.ConnectionError):
        fcm.notify(fcm_token="device-9", notification_title="t")
    assert sandbox.stats()["by_provider"]["fcm"]["resets"] == 1


# -- CLI ----------------------------------------------------------------------------------


def test_service_account_cli(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    result = run_cli("fcm-service-account", "--out", str(path), "--token-uri", "http://127.0.0.1:9/token",
                     "--project-id", "demo-project")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["type"] == "service_account"
    assert info["project_id"] == "demo-project"
    assert info["client_email"] == "sandbox@demo-project.iam.gserviceaccount.com"
    assert info["token_uri"] == "http://127.0.0.1:9/token"
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert re.fullmatch(r"[0-9a-f]{40}", info["private_key_id"])
    assert info["client_id"].isdigit()
    # google-auth accepts it
    creds = service_account.Credentials.from_service_account_info(info)
    assert creds.service_account_email == info["client_email"]

    content = path.read_text()
    again = run_cli("fcm-service-account", "--out", str(path))
    assert again.returncode == 0, again.stderr
    assert "kept existing" in again.stderr
    assert path.read_text() == content

    default = tmp_path / "default.json"
    assert run_cli("fcm-service-account", "--out", str(default)).returncode == 0
    info = json.loads(default.read_text())
    assert info["project_id"] == "notifyhub-sandbox"
    assert info["client_email"] == "sandbox@notifyhub-sandbox.iam.gserviceaccount.com"
    assert info["token_uri"] == "http://127.0.0.1:8025/token"
