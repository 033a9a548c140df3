"""Push through Firebase Cloud Messaging HTTP v1, with the official `pyfcm` SDK.

pyfcm builds the payload and authenticates with the service account (google-auth, whose
`token_uri` may point at the sandbox). Two SDK behaviours are turned off because they break
the worker's rules: it sleeps on Retry-After and retries 502/503 inside the call. Here a call
is one HTTP request, and its answer is classified with FCM's own error codes."""

from __future__ import annotations

import threading
from typing import Any

import requests
from google.auth.exceptions import GoogleAuthError
from pyfcm import FCMNotification
from pyfcm.errors import FCMError
from requests.adapters import HTTPAdapter

from ..base import OutboundMessage, Outcome, Provider, SendResult

# The data key carrying the request id of the send to the app (FCM sends no receipts).
REQUEST_KEY = "notifyhub_request_id"

DEAD_TOKEN_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
RETRYABLE_CODES = {"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED"}
QUOTA_MIN_RETRY_SECONDS = 60.0

_clients: dict[tuple[str, str, str], _SingleShotFCM] = {}
_clients_lock = threading.Lock()


class _SingleShotFCM(FCMNotification):  # type: ignore[misc]
    """pyfcm without its in-call sleeping and retries (the worker defers instead)."""

    def send_request(self, payload: Any = None, timeout: Any = None) -> requests.Response:
        response = self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)
        if self._is_access_token_expired(response):  # refresh the OAuth token once
            self.thread_local.token_expiry = 0
            response = self.requests_session.post(self.fcm_end_point, data=payload, timeout=timeout)
        return response


def fcm_client(service_account_file: str, project_id: str, api_base_url: str) -> _SingleShotFCM:
    """One client per process and account: the service-account key is loaded once and the
    credentials shared; pyfcm keeps a requests session per thread on its own."""
    key = (service_account_file, project_id, api_base_url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _SingleShotFCM(
                service_account_file=service_account_file,
                project_id=project_id or None,
                adapter=HTTPAdapter(max_retries=0),
            )
            client.FCM_END_POINT_BASE = f"{api_base_url.rstrip('/')}/v1/projects"
            _clients[key] = client
    return client


def _error_code(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return "", response.text[:300]
    code = ""
    for detail in error.get("details", []) or []:
        code = detail.get("errorCode") or code
    return code or str(error.get("status", "")), str(error.get("message", ""))[:300]


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


class FcmProvider(Provider):
    name = "fcm"
    channel = "push"
    account_settings = ("FCM_SERVICE_ACCOUNT_FILE", "FCM_PROJECT_ID", "FCM_API_BASE_URL")
    required_settings = ("FCM_SERVICE_ACCOUNT_FILE",)
    endpoint_settings = ("FCM_API_BASE_URL",)

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.tokens:
            raise ValueError("The recipient has no active device.")
        if not (message.subject or message.text or message.data):
            raise ValueError("The rendered push has no title, body or data.")
        return {
            "notification_title": message.subject or None,
            "notification_body": message.text or None,
            "data_payload": {**{str(k): str(v) for k, v in message.data.items()},
                             **({REQUEST_KEY: message.request_id} if message.request_id else {})}
                            or None,
        }

    def call(self, payload: dict[str, Any], message: OutboundMessage) -> SendResult:
        """Fans out to each active token; sent if any device took it."""
        results = [self._send_one(token, payload) for token in message.tokens]
        # Each dead token keeps the reason FCM gave for it (one may be UNREGISTERED, the next
        # INVALID_ARGUMENT): never the first token's reason for all of them.
        reasons = {t: r.error_code for r in results for t in r.invalid_tokens}
        dead = tuple(reasons)
        sent = [r for r in results if r.outcome == Outcome.SENT]
        detail: dict[str, Any] = {"devices": len(results), "sent": len(sent), "deactivated": len(dead)}
        if dead:
            detail["deactivation_reason"] = reasons[dead[0]]
            # How many devices per reason (no tokens in the detail: it is shown and exported).
            counts: dict[str, int] = {}
            for reason in reasons.values():
                counts[reason] = counts.get(reason, 0) + 1
            detail["deactivation_reasons"] = counts
        dead_extra: dict[str, Any] = {"invalid_tokens": dead, "invalid_token_reasons": reasons}
        if sent:
            return SendResult.sent(self.name, sent[0].provider_message_id, detail=detail,
                                   **dead_extra)
        retryable = [r for r in results if r.outcome == Outcome.RETRYABLE]
        if retryable:
            after = max((r.retry_after or 0.0 for r in retryable), default=0.0) or None
            first = retryable[0]
            return SendResult(Outcome.RETRYABLE, self.name, error_code=first.error_code,
                              error_message=first.error_message, retry_after=after,
                              detail=detail, **dead_extra)
        first = results[0]
        return SendResult.permanent(
            self.name, "no_valid_device" if dead else first.error_code,
            first.error_message, detail=detail, **dead_extra,
        )

    def _send_one(self, token: str, payload: dict[str, Any]) -> SendResult:
        client = fcm_client(self.setting("FCM_SERVICE_ACCOUNT_FILE"), self.setting("FCM_PROJECT_ID"),
                            self.setting("FCM_API_BASE_URL"))
        try:
            body = client.parse_payload(fcm_token=token, **payload)
            response = client.send_request(body, timeout=self.setting("FCM_TIMEOUT_SECONDS"))
        except requests.Timeout:
            return SendResult.retryable(self.name, "timeout", "FCM did not answer in time.")
        except requests.ConnectionError as exc:
            return SendResult.retryable(self.name, "connection_error", type(exc).__name__)
        except (FCMError, GoogleAuthError) as exc:  # the OAuth token could not be obtained
            return SendResult.retryable(self.name, "auth_token_error", str(exc)[:300])
        if response.status_code == 200:
            return SendResult.sent(self.name, str(response.json().get("name", "")))
        code, text = _error_code(response)
        if code in DEAD_TOKEN_CODES or (
            code == "INVALID_ARGUMENT" and "token" in text.lower()
        ):
            return SendResult.permanent(self.name, code.lower(), text, invalid_tokens=(token,))
        if code in RETRYABLE_CODES or response.status_code == 429 or response.status_code >= 500:
            after = _retry_after(response)
            if code == "QUOTA_EXCEEDED" or response.status_code == 429:
                after = max(after or 0.0, QUOTA_MIN_RETRY_SECONDS)
            return SendResult.retryable(self.name, (code or f"http_{response.status_code}").lower(),
                                        text, after)
        if response.status_code == 401:
            return SendResult.permanent(self.name, "provider_auth_error", text)
        return SendResult.permanent(self.name, (code or f"http_{response.status_code}").lower(), text)
