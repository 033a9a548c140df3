"""Twilio Messages API (SMS and WhatsApp) impersonation and status callbacks.

Implements ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as the official
``twilio`` SDK calls it::

    client = Client(account_sid, auth_token)
    client.api.base_url = sandbox_url          # the SDK's only redirection point needed
    client.messages.create(to=..., from_=..., body=..., status_callback=...)

(form-encoded body, HTTP Basic auth with the account SID and auth token), answers
201 with the Message resource, and posts signed status callbacks (``sent``, then
``delivered``/``undelivered``, or ``failed``) one per request, form-encoded, to the
message's ``StatusCallback``.  ``GET .../Messages/{Sid}.json`` fetches a message's
current state (``client.messages(sid).fetch()``).

``POST /sandbox/twilio/inbound`` simulates a user texting NotifyHub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import aiohttp
from aiohttp import web

from .callbacks import CallbackDispatcher
from .emulator import Emulator, SandboxContext, basic_auth_matches
from .store import StoredMessage

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
WHATSAPP = "whatsapp:"
MAX_BODY_CHARS = 1600
MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
SHORT_CODE_RE = re.compile(r"^\d{5,6}$")
# Alphanumeric sender ID: up to 11 characters, at least one letter.
ALPHA_SENDER_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
CONTENT_SID_RE = re.compile(r"^HX[0-9a-fA-F]{32}$")
MESSAGING_SERVICE_SID_RE = re.compile(r"^MG[0-9a-fA-F]{32}$")

# Twilio's magic test numbers (https://www.twilio.com/docs/iam/test-credentials).
MAGIC_FROM: dict[str, tuple[int, str]] = {
    "+15005550001": (21212, "The 'From' number +15005550001 is not a valid phone number, shortcode, "
                     "or alphanumeric sender ID."),
    "+15005550007": (21606, "The 'From' phone number provided (+15005550007) is not a valid, "
                     "message-capable Twilio phone number for this account."),
    "+15005550008": (21611, "This 'From' number (+15005550008) has exceeded the maximum number of "
                     "queued messages."),
}
MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "Invalid 'To' Phone Number: +15005550001"),
    "+15005550002": (21612, "The 'To' phone number: +15005550002, is not currently reachable using "
                     "the 'From' phone number via SMS."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region "
                     "indicated by the 'To' number: +15005550003."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number +15005550009 is not a valid mobile number"),
}

# Sandbox conventions for asynchronous outcomes, by the To number's trailing digits:
# suffix -> (statuses posted after acceptance, ErrorCode of the last one).
WHATSAPP_OUTCOMES: dict[str, tuple[tuple[str, ...], str]] = {
    "63014": (("failed",), "63014"),  # the user blocked the business
    "63016": (("failed",), "63016"),  # outside the 24 h session window: template required
}
SMS_OUTCOMES: dict[str, tuple[tuple[str, ...], str]] = {
    "3006": (("sent", "undelivered"), "30006"),  # landline or unreachable carrier
    "3003": (("sent", "undelivered"), "30003"),  # unreachable destination handset
    "3008": (("failed",), "30008"),  # unknown error
}
DELIVERED: tuple[tuple[str, ...], str] = (("sent", "delivered"), "")

ERROR_MESSAGES = {
    "30003": "Unreachable destination handset",
    "30006": "Landline or unreachable carrier",
    "30008": "Unknown error",
    "63014": "The message could not be delivered because the user blocked the business",
    "63016": "Failed to send freeform message because you are outside the allowed window. "
    "Please use a Template.",
}

# GSM 03.38 basic character set (ESC excluded) and its extension table (2 septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


def _pack(units: Sequence[int], single: int, multi: int) -> int:
    """Segments needed for ``units`` (the size of each character, never split)."""
    total = sum(units)
    if total <= single:
        return 1
    segments, used = 1, 0
    for size in units:
        if used + size > multi:
            segments += 1
            used = 0
        used += size
    return segments


def sms_encoding(body: str) -> str:
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body):
        return "GSM-7"
    return "UCS-2"


def num_segments(body: str) -> int:
    """SMS segments for ``body``: GSM-7 160 single / 153 per part (extension characters
    take two septets), otherwise UCS-2 70 / 67 UTF-16 code units (pairs never split)."""
    if not body:
        return 1
    if sms_encoding(body) == "GSM-7":
        return _pack([2 if c in GSM7_EXTENSION else 1 for c in body], 160, 153)
    return _pack([2 if ord(c) > 0xFFFF else 1 for c in body], 70, 67)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 (auth token) of the URL followed by every
    POST parameter sorted by name, name then value (values of a repeated name sorted)."""
    data = url
    for name in sorted(params):
        values = params[name]
        for value in sorted([values] if isinstance(values, str) else values):
            data += name + value
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


class TwilioSigner:
    """Signs one form-encoded callback per request; a ``callbacks.Signer``."""

    def __init__(self, auth_token: str) -> None:
        self.auth_token = auth_token

    def headers(self, url: str, body: bytes) -> dict[str, str]:
        params = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        return {SIGNATURE_HEADER: twilio_signature(self.auth_token, url, params)}


def _form_encoder(events: Sequence[Any]) -> bytes:
    [event] = events  # max_batch=1: Twilio posts one status per request
    return urlencode(event["params"]).encode("utf-8")


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=False)


def _valid_callback_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


class TwilioError(Exception):
    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class TwilioEmulator(Emulator):
    name = "twilio"

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        self.signer = TwilioSigner(config.twilio_auth_token)
        self.dispatcher = CallbackDispatcher(
            "twilio",
            "(each message's StatusCallback)",
            signer=self.signer,
            headers={"User-Agent": "TwilioProxy/1.1"},
            encoder=_form_encoder,
            content_type="application/x-www-form-urlencoded",
            interval=config.callback_interval,
            max_batch=1,
            url_for=lambda event: str(event["url"]),
        )
        self.dispatchers.append(self.dispatcher)
        self.session: aiohttp.ClientSession | None = None
        self.by_sid: dict[str, StoredMessage] = {}
        if not config.twilio_status_callback_url:
            self.log.info("twilio default status callback disabled; only per-message StatusCallback")

    def setup(self, app: web.Application) -> None:
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        app.router.add_post(f"{base}/Messages.json", self.create_message)
        app.router.add_get(f"{base}/Messages/{{sid}}.json", self.fetch_message)
        app.router.add_post("/sandbox/twilio/inbound", self.inbound)

    async def start(self, session: aiohttp.ClientSession) -> None:
        await super().start(session)
        self.session = session

    def reset(self) -> None:
        super().reset()
        self.by_sid.clear()

    # -- error shapes --------------------------------------------------------

    @staticmethod
    def error_body(code: int, message: str, status: int) -> dict[str, Any]:
        return {"code": code, "message": message, "more_info": MORE_INFO.format(code=code), "status": status}

    def twilio_error(
        self, status: int, code: int, message: str, *, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(self.error_body(code, message, status), status=status, headers=headers)

    def error_response(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        codes = {401: 20003, 404: 20404, 413: 21617, 429: 20429, 500: 20500, 503: 20503, 504: 20504}
        return self.twilio_error(status, codes.get(status, 20000 + status), message, headers=headers)

    def injected_failure(self, status: int, retry_after: int) -> web.Response:
        messages = {
            429: "Too Many Requests",
            500: "An internal server error has occurred",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        return self.error_response(status, messages.get(status, f"Sandbox injected HTTP {status}"),
                                   headers=headers)

    # -- auth ----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        config = self.ctx.config
        return basic_auth_matches(request, config.twilio_account_sid, config.twilio_auth_token)

    def _auth_failure(self) -> web.Response:
        self.log.info("twilio rejected HTTP 401 (bad or missing credentials)")
        return self.twilio_error(
            401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
        )

    # -- Messages API ----------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.Response:
        return await self.handle_provider_request(request, self._accept)

    async def fetch_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._auth_failure()
        message = self.by_sid.get(request.match_info["sid"])
        if message is None or request.match_info["account_sid"] != self.ctx.config.twilio_account_sid:
            return self.twilio_error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        return web.json_response(self.resource(message))

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        if not self._authorized(request):
            return self._auth_failure()
        account_sid = request.match_info["account_sid"]
        if account_sid != self.ctx.config.twilio_account_sid:
            return self.twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            form = {}
        try:
            fields = self.validate(form)
        except TwilioError as exc:
            self.log.info("twilio rejected HTTP %d (code %d)", exc.status, exc.code)
            return self.twilio_error(exc.status, exc.code, exc.message)
        message = self._store(fields)
        resource = self.resource(message)  # status "queued", as Twilio answers
        self._schedule(message, fields)
        self.log.info(
            "twilio accepted %s (%s, %s segment(s))",
            message.message_id,
            message.channel,
            message.extra["num_segments"],
        )
        return web.json_response(resource, status=201)

    @staticmethod
    def validate(form: Mapping[str, list[str]]) -> dict[str, Any]:
        """Checks in Twilio's order; raises TwilioError with Twilio's code and message."""

        def first(name: str) -> str:
            values = form.get(name) or [""]
            return values[0].strip() if name != "Body" else values[0]

        to, sender, body = first("To"), first("From"), first("Body")
        service = first("MessagingServiceSid")
        media = [url for url in form.get("MediaUrl", []) if url.strip()]
        content_sid, content_variables = first("ContentSid"), first("ContentVariables")
        callback = first("StatusCallback")

        if not to:
            raise TwilioError(21604, "A 'To' phone number is required.")
        if not sender and not service:
            raise TwilioError(21603, "A 'From' phone number is required.")
        if service and not MESSAGING_SERVICE_SID_RE.match(service):
            raise TwilioError(21701, f"The Messaging Service Sid {service} is invalid.")
        if not body and not media and not content_sid:
            raise TwilioError(21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise TwilioError(21617, "The concatenated message body exceeds the 1600 character limit.")

        to_whatsapp, from_whatsapp = to.startswith(WHATSAPP), sender.startswith(WHATSAPP)
        if to_whatsapp and sender and not from_whatsapp:
            raise TwilioError(
                63007, f"Twilio could not find a Channel with the specified From address: {sender}"
            )
        if from_whatsapp and not to_whatsapp:
            raise TwilioError(
                21910, "Invalid 'From' and 'To' pair. 'From' and 'To' should be of the same channel."
            )
        channel = "whatsapp" if to_whatsapp else "sms"
        to_number = to.removeprefix(WHATSAPP)
        from_number = sender.removeprefix(WHATSAPP)

        if not E164_RE.match(to_number):
            raise TwilioError(21211, f"The 'To' number {to} is not a valid phone number.")
        if sender and not (
            E164_RE.match(from_number)
            or (channel == "sms" and (SHORT_CODE_RE.match(from_number) or ALPHA_SENDER_RE.match(from_number)))
        ):
            raise TwilioError(
                21212,
                f"The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric "
                "sender ID.",
            )
        if from_number in MAGIC_FROM:
            code, text = MAGIC_FROM[from_number]
            raise TwilioError(code, text)
        if to_number in MAGIC_TO:
            code, text = MAGIC_TO[to_number]
            raise TwilioError(code, text)

        variables: dict[str, Any] | None = None
        if content_sid and not CONTENT_SID_RE.match(content_sid):
            raise TwilioError(21655, "The ContentSid is Invalid.")
        if content_variables:
            try:
                parsed = json.loads(content_variables)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise TwilioError(21656, "The ContentVariables Parameter is invalid.")
            variables = parsed
        if callback and not _valid_callback_url(callback):
            raise TwilioError(21609, f"The StatusCallback URL {callback} is not a valid URL.")

        return {
            "to": to,
            "from": sender or None,
            "body": body,
            "channel": channel,
            "to_number": to_number,
            "media_urls": media,
            "messaging_service_sid": service or None,
            "content_sid": content_sid or None,
            "content_variables": variables,
            "status_callback": callback or None,
        }

    # -- storage, resource and callbacks ----------------------------------------

    def _store(self, fields: dict[str, Any]) -> StoredMessage:
        sid = _new_sid("SM")
        body: str = fields["body"]
        channel: str = fields["channel"]
        segments = num_segments(body) if channel == "sms" else 1
        now = datetime.now(UTC)
        callback_url = fields["status_callback"] or self.ctx.config.twilio_status_callback_url
        message = StoredMessage(
            id=uuid.uuid4().hex,
            provider=self.name,
            channel=channel,
            message_id=sid,
            to=fields["to"],
            from_=fields["from"] or "",
            subject=None,
            text=body,
            extra={
                "sid": sid,
                "account_sid": self.ctx.config.twilio_account_sid,
                "num_segments": segments,
                "encoding": sms_encoding(body) if channel == "sms" else None,
                "num_media": len(fields["media_urls"]),
                "media_urls": fields["media_urls"],
                "messaging_service_sid": fields["messaging_service_sid"],
                "content_sid": fields["content_sid"],
                "content_variables": fields["content_variables"],
                "status_callback": callback_url or None,
                "error_code": None,
                "date_created": _rfc2822(now),
                "date_updated": _rfc2822(now),
                "date_sent": None,
            },
        )
        if not message.from_ and fields["messaging_service_sid"]:
            # Twilio picks a sender from the service's pool.
            message.from_ = (WHATSAPP if channel == "whatsapp" else "") + "+15005550006"
        message.record_event("queued", int(now.timestamp()), f"{sid}:queued")
        self.ctx.store.add(message)
        self.by_sid[sid] = message
        return message

    def _schedule(self, message: StoredMessage, fields: Mapping[str, Any]) -> None:
        """The first status now (the dispatcher's interval delays it a little), the
        final one ``delivered_delay`` later."""
        statuses, error_code = self.outcome(fields)
        first, *rest = statuses
        self._emit(message, first, error_code if not rest else "")
        for status in rest:
            self.delayed.call_later(self.ctx.config.delivered_delay, self._emit, message, status, error_code)

    @staticmethod
    def outcome(fields: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
        digits: str = fields["to_number"]
        if fields["channel"] == "whatsapp":
            for suffix, result in WHATSAPP_OUTCOMES.items():
                if digits.endswith(suffix):
                    if suffix == "63016" and fields["content_sid"]:
                        continue  # a template may be sent outside the 24 h window
                    return result
        for suffix, result in SMS_OUTCOMES.items():
            if digits.endswith(suffix):
                return result
        return DELIVERED

    def _emit(self, message: StoredMessage, status: str, error_code: str) -> None:
        now = datetime.now(UTC)
        message.record_event(status, int(now.timestamp()), f"{message.message_id}:{status}")
        message.extra["date_updated"] = _rfc2822(now)
        if status == "sent":
            message.extra["date_sent"] = _rfc2822(now)
        if error_code:
            message.extra["error_code"] = int(error_code)
            message.extra["error_message"] = ERROR_MESSAGES.get(error_code)
        url = message.extra["status_callback"]
        if url:
            self.dispatcher.enqueue({"url": url, "params": self.callback_params(message, status, error_code)})

    def callback_params(self, message: StoredMessage, status: str, error_code: str) -> dict[str, str]:
        params = {
            "SmsSid": message.message_id,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": message.to,
            "MessageSid": message.message_id,
            "AccountSid": message.extra["account_sid"],
            "From": message.from_,
            "ApiVersion": API_VERSION,
        }
        if message.extra.get("messaging_service_sid"):
            params["MessagingServiceSid"] = message.extra["messaging_service_sid"]
        if message.channel == "whatsapp":
            params["ChannelPrefix"] = "whatsapp"
            params["ChannelToAddress"] = message.to.removeprefix(WHATSAPP)
        if error_code:
            params["ErrorCode"] = error_code
        return params

    def resource(self, message: StoredMessage) -> dict[str, Any]:
        """The Message resource JSON, as Twilio returns it (and the SDK parses it)."""
        extra = message.extra
        account_sid, sid = extra["account_sid"], message.message_id
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
        return {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": message.text,
            "date_created": extra["date_created"],
            "date_sent": extra["date_sent"],
            "date_updated": extra["date_updated"],
            "direction": "outbound-api",
            "error_code": extra["error_code"],
            "error_message": extra.get("error_message"),
            "from": message.from_,
            "messaging_service_sid": extra["messaging_service_sid"],
            "num_media": str(extra["num_media"]),
            "num_segments": str(extra["num_segments"]),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": message.status,
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json",
                "feedback": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Feedback.json",
            },
            "to": message.to,
            "uri": uri,
        }

    # -- inbound simulation ------------------------------------------------------

    async def inbound(self, request: web.Request) -> web.Response:
        """``{"from", "to", "body", "channel": "sms"|"whatsapp", "url"?, "profile_name"?}``:
        posts a signed inbound-message webhook and returns NotifyHub's answer."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        channel = data.get("channel", "sms")
        if channel not in ("sms", "whatsapp"):
            return web.json_response({"error": "channel must be 'sms' or 'whatsapp'"}, status=400)
        numbers: dict[str, str] = {}
        for key in ("from", "to"):
            value = str(data.get(key) or "").removeprefix(WHATSAPP)
            if not E164_RE.match(value):
                return web.json_response({"error": f"{key!r} must be an E.164 number"}, status=400)
            numbers[key] = value
        body = data.get("body", "")
        if not isinstance(body, str):
            return web.json_response({"error": "'body' must be a string"}, status=400)
        url = str(data.get("url") or self.ctx.config.twilio_inbound_url)
        if not _valid_callback_url(url):
            return web.json_response({"error": "no valid inbound webhook URL"}, status=400)

        prefix = WHATSAPP if channel == "whatsapp" else ""
        sid = _new_sid("SM")
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "FromCountry": "US",
            "To": prefix + numbers["to"],
            "From": prefix + numbers["from"],
            "NumSegments": str(num_segments(body) if channel == "sms" else 1),
            "MessageSid": sid,
            "AccountSid": self.ctx.config.twilio_account_sid,
            "ApiVersion": API_VERSION,
        }
        if channel == "whatsapp":
            params["WaId"] = numbers["from"].lstrip("+")
            params["ProfileName"] = str(data.get("profile_name") or "Sandbox User")
            params["MessageType"] = "text"
        encoded = urlencode(params).encode("utf-8")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            **self.signer.headers(url, encoded),
        }
        assert self.session is not None
        started = time.monotonic()
        try:
            async with self.session.post(
                url, data=encoded, headers=headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as resp:
                answer = await resp.text()
                status, content_type = resp.status, resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.log.warning("twilio inbound to %s failed: %r", url, exc)
            return web.json_response(
                {"error": f"inbound webhook failed: {type(exc).__name__}: {exc}", "url": url,
                 "message_sid": sid, "params": params},
                status=502,
            )
        self.log.info("twilio inbound %s -> %s: HTTP %d", sid, url, status)
        return web.json_response(
            {
                "url": url,
                "message_sid": sid,
                "params": params,
                "status": status,
                "content_type": content_type,
                "body": answer,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            }
        )
