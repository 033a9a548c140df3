"""Vonage Messages API (SMS and WhatsApp) emulation, signed status webhooks and inbound messages.

Implements ``POST /v1/messages`` as the official ``vonage`` SDK calls it::

    client = Vonage(Auth(api_key=..., api_secret=...), HttpClientOptions(api_host=...))
    client.messages.send(Sms(to="14155550100", from_="15005550006", text="Hi", client_ref=...))

(JSON body, HTTP Basic auth with the API key and secret), validates it as Vonage does (numbers
as E.164 digits without "+", channel and message type, text length, template), answers 202
``{"message_uuid": …}`` or an RFC 7807 problem (``type`` ending ``#<code>``), and posts one
status webhook per status (``submitted``, then ``delivered``/``undeliverable``/``rejected``) to
the message's ``webhook_url``, each signed as Vonage's signed webhooks are:
``Authorization: Bearer <JWT HS256 with the signature secret>`` whose ``payload_hash`` claim is
the SHA-256 (hex) of the body.

Sandbox conventions (Vonage has no magic test numbers; these mirror Twilio's): ``to``
15005550001 → 422 code 1170 (invalid number), 15005550004 → 422 code 1240 (the recipient opted
out), 15005550002 → 422 code 1250 (unroutable); a number ending 3006 is accepted, then
``undeliverable`` (1260); a WhatsApp number ending 1300 is ``rejected`` (1300, the user blocked
the business).

``POST /sandbox/vonage/inbound`` simulates a person texting one of our numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp
from aiohttp import web

from .callbacks import CallbackDispatcher
from .emulator import Emulator, SandboxContext, basic_auth_matches
from .store import StoredMessage
from .twilio import num_segments

ERROR_TYPE = "https://developer.vonage.com/api-errors/messages#{code}"
NUMBER_RE = re.compile(r"^[1-9]\d{6,14}$")
MAX_SMS_TEXT = 3200
MAX_WHATSAPP_TEXT = 4096

MAGIC_TO: dict[str, tuple[int, str, str]] = {
    "15005550001": (1170, "Invalid or missing MSISDN", "The `to` number is not a valid number."),
    "15005550004": (1240, "Illegal number", "The recipient has opted out of messages from you."),
    "15005550002": (1250, "Unroutable", "The `to` number cannot be reached from this sender."),
}
# Number suffix → (statuses after acceptance, error code of the last one), per channel.
OUTCOMES: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "sms": {"3006": (("submitted", "undeliverable"), "1260")},
    "whatsapp": {"1300": (("rejected",), "1300")},
}
DELIVERED: tuple[tuple[str, ...], str] = (("submitted", "delivered"), "")
ERROR_TEXT = {"1260": "Destination unreachable",
              "1300": "The user has blocked messages from this business"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def vonage_jwt(secret: str, body: bytes, *, api_key: str, issued_at: float | None = None) -> str:
    """A signed-webhook JWT: HS256 over header.claims with the signature secret."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iat": int(issued_at if issued_at is not None else time.time()),
              "jti": str(uuid.uuid4()), "iss": "Vonage",
              "payload_hash": hashlib.sha256(body).hexdigest(), "api_key": api_key,
              "application_id": ""}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


class VonageSigner:
    """Signs one JSON webhook per request; a ``callbacks.Signer`` (re-signed on every retry,
    so a retried webhook is never stale)."""

    def __init__(self, secret: str, api_key: str) -> None:
        self.secret = secret
        self.api_key = api_key

    def headers(self, url: str, body: bytes) -> dict[str, str]:
        return {"Authorization": f"Bearer {vonage_jwt(self.secret, body, api_key=self.api_key)}"}


def _json_encoder(events: Sequence[Any]) -> bytes:
    [event] = events  # one webhook per status, as Vonage posts them
    return json.dumps(event["body"], separators=(",", ":")).encode("utf-8")


def _valid_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}Z"


class VonageError(Exception):
    def __init__(self, code: int, title: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.code, self.title, self.detail, self.status = code, title, detail, status


class VonageEmulator(Emulator):
    name = "vonage"

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        self.signer = VonageSigner(config.vonage_signature_secret, config.vonage_api_key)
        self.dispatcher = CallbackDispatcher(
            "vonage", "(each message's webhook_url)", signer=self.signer,
            headers={"User-Agent": "Vonage-Messages/1.0"}, encoder=_json_encoder,
            content_type="application/json", interval=config.callback_interval, max_batch=1,
            url_for=lambda event: str(event["url"]),
        )
        self.dispatchers.append(self.dispatcher)
        self.session: aiohttp.ClientSession | None = None

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.send_message)
        app.router.add_post("/sandbox/vonage/inbound", self.inbound)

    async def start(self, session: aiohttp.ClientSession) -> None:
        await super().start(session)
        self.session = session

    # -- error shapes ----------------------------------------------------------------------

    def problem(self, status: int, code: int | str, title: str, detail: str,
                headers: dict[str, str] | None = None) -> web.Response:
        body = {"type": ERROR_TYPE.format(code=code), "title": title, "detail": detail,
                "instance": str(uuid.uuid4())}
        return web.json_response(body, status=status, headers=headers)

    def error_response(self, status: int, message: str, *,
                       headers: dict[str, str] | None = None) -> web.Response:
        codes = {401: "unauthorized", 429: 1000, 500: 1030}
        return self.problem(status, codes.get(status, status), message, message, headers)

    def injected_failure(self, status: int, retry_after: int) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        titles = {429: "Throttled", 500: "Internal error"}
        return self.error_response(status, titles.get(status, f"Sandbox injected HTTP {status}"),
                                   headers=headers)

    # -- Messages API ----------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        config = self.ctx.config
        return basic_auth_matches(request, config.vonage_api_key, config.vonage_api_secret)

    async def send_message(self, request: web.Request) -> web.Response:
        return await self.handle_provider_request(request, self._accept)

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        if not self._authorized(request):
            self.log.info("vonage rejected HTTP 401 (bad or missing credentials)")
            return self.problem(401, "unauthorized", "Invalid credentials supplied",
                                "You did not provide correct credentials.")
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            data = None
        try:
            if not isinstance(data, dict):
                raise VonageError(1020, "Invalid params", "The request body is not a JSON object.")
            fields = self.validate(data)
        except VonageError as exc:
            self.log.info("vonage rejected HTTP %d (code %s)", exc.status, exc.code)
            return self.problem(exc.status, exc.code, exc.title, exc.detail)
        message = self._store(fields)
        self._schedule(message, fields)
        self.log.info("vonage accepted %s (%s)", message.message_id, message.channel)
        return web.json_response({"message_uuid": message.message_id}, status=202)

    @staticmethod
    def validate(data: dict[str, Any]) -> dict[str, Any]:
        """Checks as Vonage does; raises VonageError with its code, title and detail."""
        channel, kind = data.get("channel"), data.get("message_type")
        if channel not in ("sms", "whatsapp"):
            raise VonageError(1020, "Invalid params", "`channel` must be sms or whatsapp here.")
        for name in ("to", "from", "message_type"):
            if not data.get(name):
                raise VonageError(1010, "Missing params", f"`{name}` is required.")
        to, sender = str(data["to"]), str(data["from"])
        if not NUMBER_RE.match(to):
            raise VonageError(1170, "Invalid or missing MSISDN",
                              "`to` must be an E.164 number without a leading +.")
        if channel == "whatsapp" and not NUMBER_RE.match(sender):
            raise VonageError(1120, "Illegal sender address", "`from` must be a WhatsApp number.")
        if channel == "sms" and not (NUMBER_RE.match(sender)
                                     or re.match(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$", sender)):
            raise VonageError(1120, "Illegal sender address",
                              "`from` must be a number or an alphanumeric sender ID.")
        text = data.get("text")
        template = data.get("template")
        if kind == "text":
            limit = MAX_SMS_TEXT if channel == "sms" else MAX_WHATSAPP_TEXT
            if not isinstance(text, str) or not text:
                raise VonageError(1010, "Missing params", "`text` is required.")
            if len(text) > limit:
                raise VonageError(1090, "Message too long", f"`text` exceeds {limit} characters.")
        elif kind == "template" and channel == "whatsapp":
            if not isinstance(template, dict) or not template.get("name"):
                raise VonageError(1010, "Missing params", "`template.name` is required.")
        else:
            raise VonageError(1020, "Invalid params", f"Unsupported message_type {kind!r}.")
        client_ref = data.get("client_ref")
        if client_ref is not None and (not isinstance(client_ref, str) or len(client_ref) > 100):
            raise VonageError(1020, "Invalid params", "`client_ref` is at most 100 characters.")
        webhook_url = data.get("webhook_url")
        if webhook_url is not None and not _valid_url(str(webhook_url)):
            raise VonageError(1020, "Invalid params", "`webhook_url` is not a valid URL.")
        if to in MAGIC_TO:
            code, title, detail = MAGIC_TO[to]
            raise VonageError(code, title, detail)
        return {"channel": channel, "to": to, "from": sender, "message_type": kind,
                "text": text if kind == "text" else None, "template": template,
                "client_ref": client_ref, "webhook_url": webhook_url}

    def _store(self, fields: dict[str, Any]) -> StoredMessage:
        message_uuid = str(uuid.uuid4())
        text = fields["text"] or ""
        message = StoredMessage(
            id=uuid.uuid4().hex, provider=self.name, channel=fields["channel"],
            message_id=message_uuid, to=fields["to"], from_=fields["from"], subject=None,
            text=text or None,
            extra={"message_uuid": message_uuid, "client_ref": fields["client_ref"],
                   "message_type": fields["message_type"], "template": fields["template"],
                   "webhook_url": fields["webhook_url"] or self.ctx.config.vonage_status_url,
                   "sms_count": num_segments(text) if fields["channel"] == "sms" else None},
        )
        message.record_event("accepted", int(time.time()), f"{message_uuid}:accepted")
        self.ctx.store.add(message)
        return message

    def _schedule(self, message: StoredMessage, fields: dict[str, Any]) -> None:
        statuses, error_code = DELIVERED
        for suffix, outcome in OUTCOMES.get(fields["channel"], {}).items():
            if fields["to"].endswith(suffix):
                statuses, error_code = outcome
        first, *rest = statuses
        self._emit(message, first, error_code if not rest else "")
        for status in rest:
            self.delayed.call_later(self.ctx.config.delivered_delay, self._emit, message, status,
                                    error_code)

    def _emit(self, message: StoredMessage, status: str, error_code: str) -> None:
        message.record_event(status, int(time.time()), f"{message.message_id}:{status}")
        url = message.extra["webhook_url"]
        if not url:
            return
        body: dict[str, Any] = {
            "message_uuid": message.message_id, "to": message.to, "from": message.from_,
            "timestamp": _now_iso(), "status": status, "channel": message.channel,
        }
        if message.extra.get("client_ref"):
            body["client_ref"] = message.extra["client_ref"]
        if message.channel == "sms" and message.extra.get("sms_count"):
            body["usage"] = {"currency": "EUR", "price": "0.0333"}
            body["sms"] = {"count_total": str(message.extra["sms_count"])}
        if error_code:
            body["error"] = {"type": ERROR_TYPE.format(code=error_code), "title": error_code,
                             "detail": ERROR_TEXT.get(error_code, "Error")}
        self.dispatcher.enqueue({"url": url, "body": body})

    # -- inbound simulation ----------------------------------------------------------------

    async def inbound(self, request: web.Request) -> web.Response:
        """``{"from", "to", "text", "channel": "sms"|"whatsapp", "url"?}``: posts a signed
        inbound-message webhook as Vonage does and returns NotifyHub's answer."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        channel = data.get("channel", "sms")
        if channel not in ("sms", "whatsapp"):
            return web.json_response({"error": "channel must be 'sms' or 'whatsapp'"}, status=400)
        numbers = {}
        for key in ("from", "to"):
            value = str(data.get(key) or "").removeprefix("whatsapp:").lstrip("+")
            if not NUMBER_RE.match(value):
                return web.json_response({"error": f"{key!r} must be a phone number"}, status=400)
            numbers[key] = value
        text = data.get("text", "")
        if not isinstance(text, str):
            return web.json_response({"error": "'text' must be a string"}, status=400)
        url = str(data.get("url") or self.ctx.config.vonage_inbound_url)
        if not _valid_url(url):
            return web.json_response({"error": "no valid inbound webhook URL"}, status=400)
        payload: dict[str, Any] = {
            "channel": channel, "message_uuid": str(uuid.uuid4()), "to": numbers["to"],
            "from": numbers["from"], "timestamp": _now_iso(), "text": text,
            "message_type": "text",
        }
        if channel == "whatsapp":
            payload["profile"] = {"name": str(data.get("profile_name") or "Sandbox User")}
        else:
            payload["sms"] = {"num_messages": str(num_segments(text))}
        encoded = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "Vonage-Messages/1.0",
                   **self.signer.headers(url, encoded)}
        assert self.session is not None
        try:
            async with self.session.post(url, data=encoded, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=15)) as resp:
                answer, status = await resp.text(), resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.log.warning("vonage inbound to %s failed: %r", url, exc)
            return web.json_response({"error": f"inbound webhook failed: {type(exc).__name__}",
                                      "url": url, "payload": payload}, status=502)
        self.log.info("vonage inbound %s -> %s: HTTP %d", payload["message_uuid"], url, status)
        return web.json_response({"url": url, "payload": payload, "status": status,
                                  "body": answer})
