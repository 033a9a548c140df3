"""SendGrid v3 Mail Send impersonation and Event Webhook generation.

Implements ``POST /v3/mail/send`` as the official ``sendgrid`` Python SDK calls
it (``SendGridAPIClient(api_key=..., host=<sandbox url>)``), and posts signed
Event Webhook batches (processed, then delivered or bounce) to NotifyHub.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
import uuid
from typing import Any

from aiohttp import web

from .callbacks import CallbackDispatcher
from .emulator import Emulator, SandboxContext
from .signing import (
    SendGridSigner,
    generate_private_key,
    load_private_key,
)
from .store import StoredMessage, mask_email

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10

AUTH_INVALID = "The provided authorization grant is invalid, expired, or revoked"
MSG_NOT_JSON = "The request body must be a valid JSON object."
MSG_PERSONALIZATIONS = "The personalizations field is required and must have at least one personalization."
MSG_TOO_MANY_PERSONALIZATIONS = (
    f"The personalizations field may contain at most {MAX_PERSONALIZATIONS} personalizations."
)
MSG_TOO_MANY_RECIPIENTS = (
    f"The total number of recipients (to, cc and bcc) must be no more than {MAX_RECIPIENTS}."
)
MSG_TO_REQUIRED = (
    "The to array is required for all personalization objects, and must have at least one "
    "email object with a valid email address."
)
MSG_INVALID_ADDRESS = "Does not contain a valid address."
MSG_EMAIL_OBJECT = "Each email object must be an object with an email parameter."
MSG_DUPLICATE = "Each email address in the personalization block should be unique between to, cc, and bcc."
MSG_FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires "
    "the email parameter, but may also contain a name parameter."
)
MSG_SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template with "
    "a subject defined or if every personalization has a subject defined."
)
MSG_SUBJECT_TYPE = "The subject must be a string."
MSG_CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must be "
    "at least one defined content block."
)
MSG_CONTENT_ITEM = "Each content block must be an object with a type and a value."
MSG_CONTENT_TYPE = "The content type must be a string at least one character in length."
MSG_CONTENT_VALUE = "The content value must be a string at least one character in length."
MSG_CONTENT_ORDER = (
    "If present, text/plain and text/html may only be provided in this order: text/plain, then text/html."
)
MSG_TEMPLATE_ID = "The template_id must be a non-empty string."
MSG_CATEGORIES = (
    f"Categories must be an array of at most {MAX_CATEGORIES} non-empty strings of at most 255 characters."
)

BOUNCE_STATUS = "5.1.1"
BOUNCE_REASON = "550 5.1.1 The email account that you tried to reach does not exist."

# Pragmatic syntax check, close to what SendGrid accepts: a local part without
# whitespace/specials, and a dotted domain of LDH labels.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")+$")


def is_valid_email(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL_RE.match(value):
        return False
    local = value.split("@", 1)[0]
    return not (local.startswith(".") or local.endswith(".") or ".." in local)


def is_bounce_address(address: str) -> bool:
    return address.split("@", 1)[0].lower().startswith("bounce")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, message: str, field: str | None) -> None:
        self.items.append({"message": message, "field": field, "help": None})


def _check_string_map(errors: _Errors, value: Any, field: str) -> None:
    if not isinstance(value, dict):
        errors.add(f"The {field} must be an object whose values are strings.", field)
        return
    for key, item in value.items():
        if not isinstance(item, str):
            errors.add(f"Invalid type. Expected: string, given: {_type_name(item)}.", f"{field}.{key}")


def _check_addresses(errors: _Errors, items: Any, field: str, seen: dict[str, str]) -> int:
    """Validate a to/cc/bcc list; returns how many entries it holds."""
    if not isinstance(items, list):
        errors.add(f"The {field.rsplit('.', 1)[-1]} must be an array of email objects.", field)
        return 0
    for j, item in enumerate(items):
        item_field = f"{field}.{j}"
        if not isinstance(item, dict) or "email" not in item:
            errors.add(MSG_EMAIL_OBJECT, f"{item_field}.email")
            continue
        email = item["email"]
        if not is_valid_email(email):
            errors.add(MSG_INVALID_ADDRESS, f"{item_field}.email")
            continue
        key = email.lower()
        if key in seen:
            errors.add(MSG_DUPLICATE, f"{item_field}.email")
        else:
            seen[key] = item_field
    return len(items)


def validate_mail_send(payload: Any) -> list[dict[str, Any]]:
    """Every problem with a v3 Mail Send body, as SendGrid ``errors`` entries."""
    errors = _Errors()
    if not isinstance(payload, dict):
        errors.add(MSG_NOT_JSON, None)
        return errors.items

    template_id = payload.get("template_id")
    has_template = isinstance(template_id, str) and template_id.strip() != ""
    if "template_id" in payload and not has_template:
        errors.add(MSG_TEMPLATE_ID, "template_id")

    # personalizations
    personalizations = payload.get("personalizations")
    every_personalization_has_subject = False
    if not isinstance(personalizations, list) or not personalizations:
        errors.add(MSG_PERSONALIZATIONS, "personalizations")
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.add(MSG_TOO_MANY_PERSONALIZATIONS, "personalizations")
    else:
        total = 0
        every_personalization_has_subject = True
        for i, pers in enumerate(personalizations):
            base = f"personalizations.{i}"
            if not isinstance(pers, dict):
                errors.add(MSG_TO_REQUIRED, f"{base}.to")
                every_personalization_has_subject = False
                continue
            seen: dict[str, str] = {}
            to = pers.get("to")
            if not isinstance(to, list) or not to:
                errors.add(MSG_TO_REQUIRED, f"{base}.to")
            else:
                total += _check_addresses(errors, to, f"{base}.to", seen)
            for key in ("cc", "bcc"):
                if key in pers:
                    total += _check_addresses(errors, pers[key], f"{base}.{key}", seen)
            subject = pers.get("subject")
            if "subject" in pers and not isinstance(subject, str):
                errors.add(MSG_SUBJECT_TYPE, f"{base}.subject")
            if not (isinstance(subject, str) and subject):
                every_personalization_has_subject = False
            if "custom_args" in pers:
                _check_string_map(errors, pers["custom_args"], f"{base}.custom_args")
            if "headers" in pers:
                _check_string_map(errors, pers["headers"], f"{base}.headers")
        if total > MAX_RECIPIENTS:
            errors.add(MSG_TOO_MANY_RECIPIENTS, "personalizations")

    # from
    sender = payload.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.add(MSG_FROM_REQUIRED, "from.email")
    elif not is_valid_email(sender["email"]):
        errors.add(MSG_INVALID_ADDRESS, "from.email")

    if "reply_to" in payload:
        reply_to = payload["reply_to"]
        if not isinstance(reply_to, dict) or not is_valid_email(reply_to.get("email")):
            errors.add(MSG_INVALID_ADDRESS, "reply_to.email")

    # subject
    subject = payload.get("subject")
    if "subject" in payload and not isinstance(subject, str):
        errors.add(MSG_SUBJECT_TYPE, "subject")
    elif (
        not has_template
        and not (isinstance(subject, str) and subject)
        and not every_personalization_has_subject
    ):
        errors.add(MSG_SUBJECT_REQUIRED, "subject")

    # content
    content = payload.get("content")
    if content is None or (isinstance(content, list) and not content):
        if not has_template:
            errors.add(MSG_CONTENT_REQUIRED, "content")
    elif not isinstance(content, list):
        errors.add(MSG_CONTENT_REQUIRED, "content")
    else:
        first_index: dict[str, int] = {}
        for j, item in enumerate(content):
            item_field = f"content.{j}"
            if not isinstance(item, dict):
                errors.add(MSG_CONTENT_ITEM, item_field)
                continue
            ctype = item.get("type")
            if not isinstance(ctype, str) or not ctype.strip():
                errors.add(MSG_CONTENT_TYPE, f"{item_field}.type")
            else:
                first_index.setdefault(ctype.strip().lower(), j)
            value = item.get("value")
            if not isinstance(value, str) or value == "":
                errors.add(MSG_CONTENT_VALUE, f"{item_field}.value")
        plain, html = first_index.get("text/plain"), first_index.get("text/html")
        if plain is not None and html is not None and html < plain:
            errors.add(MSG_CONTENT_ORDER, f"content.{html}.type")

    if "custom_args" in payload:
        _check_string_map(errors, payload["custom_args"], "custom_args")
    if "headers" in payload:
        _check_string_map(errors, payload["headers"], "headers")

    if "categories" in payload:
        categories = payload["categories"]
        if (
            not isinstance(categories, list)
            or len(categories) > MAX_CATEGORIES
            or not all(isinstance(c, str) and 0 < len(c) <= 255 for c in categories)
        ):
            errors.add(MSG_CATEGORIES, "categories")

    return errors.items


def _content_value(content: Any, ctype: str) -> str | None:
    if not isinstance(content, list):
        return None
    for item in content:
        if isinstance(item, dict) and str(item.get("type", "")).strip().lower() == ctype:
            value = item.get("value")
            return value if isinstance(value, str) else None
    return None


def _emails(items: Any) -> list[str]:
    return [item["email"] for item in items or [] if isinstance(item, dict)]


def _sandbox_mode(payload: dict[str, Any]) -> bool:
    settings = payload.get("mail_settings")
    if not isinstance(settings, dict):
        return False
    sandbox = settings.get("sandbox_mode")
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


class SendGridEmulator(Emulator):
    name = "sendgrid"

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        if config.sendgrid_signing_key_file:
            key = load_private_key(config.sendgrid_signing_key_file)
            self.log.info("sendgrid signing key loaded from %s", config.sendgrid_signing_key_file)
        else:
            key = generate_private_key()
            self.log.info("sendgrid ephemeral signing key generated")
        self.signer = SendGridSigner(key)
        self.log.info("sendgrid event webhook public key: %s", self.signer.public_key_b64)
        self.dispatcher: CallbackDispatcher | None = None
        if config.sendgrid_callback_url:
            self.dispatcher = CallbackDispatcher(
                "sendgrid",
                config.sendgrid_callback_url,
                signer=self.signer,
                headers={"User-Agent": "SendGrid Event API"},
                interval=config.callback_interval,
                max_batch=config.callback_max_batch,
            )
            self.dispatchers.append(self.dispatcher)
        else:
            self.log.info("sendgrid callbacks disabled (SANDBOX_SENDGRID_CALLBACK_URL is empty)")

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v3/mail/send", self.mail_send)
        app.router.add_get("/sandbox/sendgrid/public_key", self.public_key)

    def error_response(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        return web.json_response(
            {"errors": [{"message": message, "field": None, "help": None}]},
            status=status,
            headers=headers,
        )

    def injected_failure(self, status: int, retry_after: int) -> web.Response:
        if status == 429:
            reset = int(time.time()) + retry_after
            return self.error_response(
                429,
                "too many requests",
                headers={
                    "Retry-After": str(retry_after),
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                },
            )
        messages = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return self.error_response(status, messages.get(status, f"Sandbox injected HTTP {status}"))

    # -- handlers ----------------------------------------------------------

    async def public_key(self, request: web.Request) -> web.Response:
        return web.json_response({"public_key": self.signer.public_key_b64})

    async def mail_send(self, request: web.Request) -> web.Response:
        return await self.handle_provider_request(request, self._accept)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expected = self.ctx.config.sendgrid_api_key
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        if not self._authorized(request):
            self.log.info("sendgrid rejected HTTP 401 (bad or missing API key)")
            return self.error_response(401, AUTH_INVALID)
        try:
            payload = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        errors = validate_mail_send(payload)
        if errors:
            fields = ",".join(str(e["field"]) for e in errors[:5])
            self.log.info("sendgrid rejected HTTP 400 (%d error(s): %s)", len(errors), fields)
            return web.json_response({"errors": errors}, status=400)
        assert isinstance(payload, dict)
        if _sandbox_mode(payload):
            self.log.info("sendgrid accepted in mail_settings.sandbox_mode (not stored)")
            return web.Response(status=200)

        x_message_id = secrets.token_urlsafe(16)  # 22 url-safe characters
        messages = self._store(payload, x_message_id)
        shown = mask_email(messages[0].to) + (f" +{len(messages) - 1}" if len(messages) > 1 else "")
        self.log.info("sendgrid accepted %s: %d recipient(s) (%s)", x_message_id, len(messages), shown)
        return web.Response(status=202, headers={"X-Message-Id": x_message_id})

    # -- storage and events ------------------------------------------------

    def _store(self, payload: dict[str, Any], x_message_id: str) -> list[StoredMessage]:
        top_custom_args: dict[str, str] = payload.get("custom_args") or {}
        top_headers: dict[str, str] = payload.get("headers") or {}
        categories: list[str] = payload.get("categories") or []
        content = payload.get("content")
        text = _content_value(content, "text/plain")
        html = _content_value(content, "text/html")
        sender = payload["from"]
        reply_to = payload.get("reply_to")
        attachments = [
            {"filename": a.get("filename"), "type": a.get("type")}
            for a in payload.get("attachments") or []
            if isinstance(a, dict)
        ]
        delay = self.ctx.config.delivered_delay
        stored: list[StoredMessage] = []
        index = 0
        for p_index, pers in enumerate(payload["personalizations"]):
            subject = pers.get("subject") or payload.get("subject")
            custom_args = {**top_custom_args, **(pers.get("custom_args") or {})}
            headers = {**top_headers, **(pers.get("headers") or {})}
            cc, bcc = _emails(pers.get("cc")), _emails(pers.get("bcc"))
            for recipient in pers["to"]:
                sg_message_id = f"{x_message_id}.sandbox.{index}"
                message = StoredMessage(
                    id=uuid.uuid4().hex,
                    provider=self.name,
                    message_id=x_message_id,
                    to=recipient["email"],
                    from_=sender["email"],
                    subject=subject,
                    text=text,
                    html=html,
                    headers=headers,
                    categories=list(categories),
                    custom_args=custom_args,
                    extra={
                        "sg_message_id": sg_message_id,
                        "to_name": recipient.get("name"),
                        "from_name": sender.get("name"),
                        "reply_to": reply_to.get("email") if isinstance(reply_to, dict) else None,
                        "cc": cc,
                        "bcc": bcc,
                        "personalization": p_index,
                        "template_id": payload.get("template_id"),
                        "dynamic_template_data": pers.get("dynamic_template_data"),
                        "attachments": attachments,
                    },
                )
                self.ctx.store.add(message)
                stored.append(message)
                self._emit(message, "processed")
                final = "bounce" if is_bounce_address(message.to) else "delivered"
                self.delayed.call_later(delay, self._emit, message, final)
                index += 1
        return stored

    def _emit(self, message: StoredMessage, event_name: str) -> None:
        event = self.build_event(message, event_name)
        message.record_event(event_name, event["timestamp"], event["sg_event_id"])
        if self.dispatcher is not None:
            self.dispatcher.enqueue(event)

    def build_event(self, message: StoredMessage, event_name: str) -> dict[str, Any]:
        """One Event Webhook event; custom args are top-level keys (reserved keys win)."""
        event: dict[str, Any] = dict(message.custom_args)
        event.update(
            {
                "email": message.to,
                "timestamp": int(time.time()),
                "event": event_name,
                "sg_event_id": secrets.token_urlsafe(24),
                "sg_message_id": message.extra["sg_message_id"],
                "smtp-id": f"<{message.message_id}@sandbox.sendgrid.net>",
            }
        )
        if message.categories:
            # SendGrid posts a single category as a string, several as an array.
            cats = message.categories
            event["category"] = cats[0] if len(cats) == 1 else list(cats)
        if event_name == "delivered":
            event.update({"response": "250 2.0.0 OK (sandbox)", "ip": "127.0.0.1", "tls": 1})
        elif event_name == "bounce":
            event.update(
                {
                    "type": "bounce",
                    "status": BOUNCE_STATUS,
                    "reason": BOUNCE_REASON,
                    "bounce_classification": "Invalid Address",
                    "ip": "127.0.0.1",
                    "tls": 1,
                }
            )
        return event
