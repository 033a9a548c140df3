"""FCM HTTP v1 impersonation, with the OAuth 2.0 token endpoint a service account uses.

As the ``pyfcm`` SDK (2.x) calls it::

    fcm = FCMNotification(service_account_file=path, project_id="notifyhub-sandbox")
    fcm.FCM_END_POINT_BASE = f"{sandbox_url}/v1/projects"   # before the first send
    fcm.notify(fcm_token=..., notification_title=..., notification_body=..., data_payload=...)

The service-account JSON (``python -m sandbox fcm-service-account --out F``) has
its ``token_uri`` pointed at ``{sandbox_url}/token``: google-auth signs a JWT
assertion with the account's RSA key and trades it there for a Bearer token
(``POST /token``), which ``POST /v1/projects/{project}/messages:send`` requires.

FCM has no delivery receipts, so there are no callbacks.  Reserved device tokens
(by prefix) trigger FCM's error answers; see ``RESERVED_TOKENS``.
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
from typing import Any

import jwt
from aiohttp import web

from .emulator import Emulator, SandboxContext
from .service_account import ServiceAccount
from .store import StoredMessage

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always uses Google's endpoint as the assertion's audience, whatever token_uri says.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
FCM_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"}
)
MAX_ASSERTION_LIFETIME = 3600

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"

MSG_NOT_FOUND = "Requested entity was not found."
MSG_INVALID_TOKEN = "The registration token is not a valid FCM registration token"  # noqa: S105
MSG_INVALID_ARGUMENT = "Request contains an invalid argument."
MSG_NO_TARGET = "Recipient of the message is not set."
MSG_QUOTA = (
    "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of "
    "service 'fcm.googleapis.com'."
)
MSG_UNAVAILABLE = "The service is currently unavailable."
MSG_INTERNAL = "Internal error encountered."
MSG_MISMATCH = "SenderId mismatch"
MSG_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MSG_CREDENTIALS_MISSING = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MSG_SCOPES = "Request had insufficient authentication scopes."
MSG_TOO_BIG = "Android message is too big"
MAX_PAYLOAD_BYTES = 4096

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# HTTP status -> FCM ErrorCode in details (where FCM gives one).
FCM_ERROR_CODES = {
    400: "INVALID_ARGUMENT",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}

# Token prefix -> (HTTP status, message, FCM error code, extra headers)
RESERVED_TOKENS: dict[str, tuple[int, str, str, dict[str, str]]] = {
    "unregistered": (404, MSG_NOT_FOUND, "UNREGISTERED", {}),
    "invalid": (400, MSG_INVALID_TOKEN, "INVALID_ARGUMENT", {}),
    "quota": (429, MSG_QUOTA, "QUOTA_EXCEEDED", {"Retry-After": "60"}),
    "unavailable": (503, MSG_UNAVAILABLE, "UNAVAILABLE", {}),
    "internal": (500, MSG_INTERNAL, "INTERNAL", {}),
    "mismatch": (403, MSG_MISMATCH, "SENDER_ID_MISMATCH", {}),
}

MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options",
     "token", "topic", "condition"}
)
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
TOPIC_RE = re.compile(r"^[a-zA-Z0-9\-_.~%]{1,900}$")
DURATION_RE = re.compile(r"^\d+(\.\d{1,9})?s$")
OBJECT_TYPES = {
    "android": "type.googleapis.com/google.firebase.fcm.v1.AndroidConfig",
    "apns": "type.googleapis.com/google.firebase.fcm.v1.ApnsConfig",
    "webpush": "type.googleapis.com/google.firebase.fcm.v1.WebpushConfig",
    "fcm_options": "type.googleapis.com/google.firebase.fcm.v1.FcmOptions",
    "notification": "type.googleapis.com/google.firebase.fcm.v1.Notification",
}


# -- helpers -----------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_repr(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class FcmInvalid(Exception):
    """A 400 INVALID_ARGUMENT with a BadRequest field violation."""

    def __init__(self, message: str, field: str | None = None, *, fcm_code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.fcm_code = fcm_code


def validate_send(payload: Any) -> tuple[dict[str, Any], bool]:
    """The ``message`` object and ``validate_only`` of a send request; raises FcmInvalid."""
    if not isinstance(payload, dict):
        raise FcmInvalid("Invalid JSON payload received. Expected an object.")
    for key in payload:
        if key not in ("message", "validate_only"):
            raise FcmInvalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    validate_only = payload.get("validate_only", False)
    if not isinstance(validate_only, bool):
        raise FcmInvalid(
            f"Invalid value at 'validate_only' (TYPE_BOOL), {_json_repr(validate_only)}", "validate_only"
        )
    message = payload.get("message")
    if message is None:
        raise FcmInvalid(MSG_NO_TARGET, "message")
    if not isinstance(message, dict):
        raise FcmInvalid(
            f"Invalid value at 'message' (type.googleapis.com/google.firebase.fcm.v1.Message), "
            f"{_json_repr(message)}",
            "message",
        )
    for key in message:
        if key not in MESSAGE_FIELDS:
            raise FcmInvalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at 'message': Cannot find field."
            )

    targets = [k for k in ("token", "topic", "condition") if k in message]
    if not targets:
        raise FcmInvalid(MSG_NO_TARGET, "message")
    if len(targets) > 1:
        raise FcmInvalid(
            f"Invalid value at 'message' (oneof), oneof field 'target' is already set. "
            f"Cannot set '{targets[1]}'",
            "message",
        )
    target = targets[0]
    value = message[target]
    if not isinstance(value, str):
        raise FcmInvalid(
            f"Invalid value at 'message.{target}' (TYPE_STRING), {_json_repr(value)}", f"message.{target}"
        )
    if target == "token" and not value.strip():
        raise FcmInvalid(MSG_INVALID_TOKEN, "message.token")
    if target == "topic" and not TOPIC_RE.match(value.removeprefix("/topics/")):
        raise FcmInvalid(MSG_INVALID_ARGUMENT, "message.topic")
    if target == "condition" and not value.strip():
        raise FcmInvalid(MSG_INVALID_ARGUMENT, "message.condition")

    data = message.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise FcmInvalid(f"Invalid value at 'message.data' (Map), {_json_repr(data)}", "message.data")
        for index, (key, item) in enumerate(data.items()):
            if not isinstance(item, str):
                field = f"message.data[{index}].value"
                raise FcmInvalid(f"Invalid value at '{field}' (TYPE_STRING), {_json_repr(item)}", field)
            lowered = key.lower()
            if lowered in RESERVED_DATA_KEYS or lowered.startswith(("google.", "gcm.")):
                raise FcmInvalid(f"Invalid data payload key: {key}", "message.data")

    for block in ("notification", "android", "apns", "webpush", "fcm_options"):
        if block in message and not isinstance(message[block], dict):
            raise FcmInvalid(
                f"Invalid value at 'message.{block}' ({OBJECT_TYPES[block]}), {_json_repr(message[block])}",
                f"message.{block}",
            )
    notification = message.get("notification") or {}
    for key, item in notification.items():
        if key not in NOTIFICATION_FIELDS:
            raise FcmInvalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at 'message.notification': "
                "Cannot find field."
            )
        if not isinstance(item, str):
            field = f"message.notification.{key}"
            raise FcmInvalid(f"Invalid value at '{field}' (TYPE_STRING), {_json_repr(item)}", field)
    android = message.get("android") or {}
    priority = android.get("priority")
    if priority is not None and str(priority).upper() not in ("NORMAL", "HIGH"):
        field = "message.android.priority"
        raise FcmInvalid(
            f"Invalid value at '{field}' "
            f"(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {_json_repr(priority)}",
            field,
        )
    ttl = android.get("ttl")
    if ttl is not None and not (isinstance(ttl, str) and DURATION_RE.match(ttl)):
        field = "message.android.ttl"
        raise FcmInvalid(
            f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), {_json_repr(ttl)}",
            field,
        )
    size = len(json.dumps({"data": data or {}, "notification": notification}, ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise FcmInvalid(MSG_TOO_BIG, "message")
    return message, validate_only


# -- provider ----------------------------------------------------------------------


class FcmEmulator(Emulator):
    name = "fcm"

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        self.account: ServiceAccount | None = None
        if config.fcm_service_account_file:
            self.account = ServiceAccount(config.fcm_service_account_file)
            self.log.info(
                "fcm service account %s (project %s) loaded from %s",
                self.account.client_email,
                self.account.project_id,
                self.account.path,
            )
            secret_seed = self.account.fingerprint
        else:
            self.log.warning(
                "fcm: SANDBOX_FCM_SERVICE_ACCOUNT_FILE is not set; any well-formed JWT assertion "
                "is accepted at /token without verifying its signature"
            )
            secret_seed = b""
        # Derived (not random) so tokens survive a sandbox restart with the same account.
        self._token_secret = hashlib.sha256(b"notifyhub-sandbox-fcm-token:" + secret_seed).digest()
        self.tokens_issued = 0
        self.token_errors = 0

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)

    def extra_stats(self) -> dict[str, Any]:
        return {"tokens_issued": self.tokens_issued, "token_errors": self.token_errors}

    def reset(self) -> None:
        super().reset()
        self.tokens_issued = 0
        self.token_errors = 0

    # -- error shapes ----------------------------------------------------------

    @staticmethod
    def google_error(
        status: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        status_name: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": status_name or STATUS_NAMES.get(status, "UNKNOWN"),
        }
        if details:
            error["details"] = details
        return web.json_response({"error": error}, status=status, headers=headers)

    @staticmethod
    def fcm_detail(code: str) -> dict[str, Any]:
        return {"@type": FCM_ERROR_TYPE, "errorCode": code}

    def error_response(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        code = FCM_ERROR_CODES.get(status)
        details = [self.fcm_detail(code)] if code else None
        return self.google_error(status, message, details, headers=headers)

    def injected_failure(self, status: int, retry_after: int) -> web.Response:
        messages = {429: MSG_QUOTA, 500: MSG_INTERNAL, 502: MSG_UNAVAILABLE, 503: MSG_UNAVAILABLE}
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        return self.error_response(status, messages.get(status, f"Sandbox injected HTTP {status}"),
                                   headers=headers)

    def timeout_response(self) -> web.Response:
        return self.google_error(504, "The request timed out.")

    def _auth_error(self, reason: str, message: str = MSG_UNAUTHENTICATED) -> web.Response:
        detail = {
            "@type": ERROR_INFO_TYPE,
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {
                "method": "google.firebase.fcm.v1.FcmService.SendMessage",
                "service": "fcm.googleapis.com",
            },
        }
        status = 403 if reason in ("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "IAM_PERMISSION_DENIED") else 401
        self.log.info("fcm rejected HTTP %d (%s)", status, reason)
        return self.google_error(status, message, [detail])

    # -- OAuth token endpoint ----------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        assertion = str(form.get("assertion", ""))
        if grant_type != JWT_BEARER:
            self.token_errors += 1
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant_type}"},
                status=400,
            )
        try:
            claims = self.verify_assertion(assertion)
        except ValueError as exc:
            self.token_errors += 1
            self.log.info("fcm token endpoint: invalid_grant (%s)", exc)
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        ttl = self.ctx.config.fcm_token_ttl_s
        access_token = self.issue_token(claims, ttl)
        self.tokens_issued += 1
        self.log.info("fcm token issued to %s", claims.get("iss"))
        return web.json_response(
            {"access_token": access_token, "expires_in": ttl, "token_type": "Bearer"},
            headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"},
        )

    def verify_assertion(self, assertion: str) -> dict[str, Any]:
        """Claims of a valid JWT bearer assertion; ValueError with Google's wording otherwise."""
        if assertion.count(".") != 2:
            raise ValueError("Invalid JWT: the assertion is not a signed JWT (header.payload.signature)")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise ValueError(f"Invalid JWT: {exc}") from exc
        if header.get("alg") != "RS256":
            raise ValueError("Invalid JWT Signature.")
        now = time.time()
        iat, exp = unverified.get("iat"), unverified.get("exp")
        if not (
            isinstance(iat, int | float)
            and isinstance(exp, int | float)
            and iat - 60 <= now < exp + 60
            and 0 < exp - iat <= MAX_ASSERTION_LIFETIME
        ):
            raise ValueError(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim."
            )
        if not isinstance(unverified.get("iss"), str) or not unverified["iss"]:
            raise ValueError("Invalid JWT: No issuer.")
        if self.account is None:
            return unverified
        account = self.account
        if unverified["iss"] != account.client_email:
            raise ValueError("Invalid grant: account not found")
        if header.get("kid") is not None and header["kid"] != account.private_key_id:
            raise ValueError("Invalid JWT Signature.")
        try:
            return jwt.decode(
                assertion,
                key=account.public_key,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_URI, account.token_uri],
                issuer=account.client_email,
                leeway=60,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise ValueError("Invalid JWT Signature.") from exc
        except jwt.InvalidAudienceError as exc:
            raise ValueError(
                f"Invalid JWT: Failed audience check. The right audience is {GOOGLE_TOKEN_URI}"
            ) from exc
        except jwt.PyJWTError as exc:
            raise ValueError(f"Invalid JWT: {exc}") from exc

    def issue_token(self, claims: dict[str, Any], ttl: int) -> str:
        """A stateless Bearer token: payload + HMAC (survives /sandbox/reset)."""
        scopes = str(claims.get("scope", "")).split()
        payload = {
            "sub": claims.get("iss"),
            "prj": self.account.project_id if self.account else "",
            "scp": scopes,
            "exp": int(time.time()) + ttl,
            "jti": secrets.token_hex(8),
        }
        body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
        mac = _b64url(hmac.new(self._token_secret, body.encode(), hashlib.sha256).digest())
        return f"ya29.sandbox.{body}.{mac}"

    def check_token(self, token: str) -> dict[str, Any] | None:
        """The token's payload if this sandbox issued it (expiry not checked here)."""
        prefix = "ya29.sandbox."
        if not token.startswith(prefix) or token.count(".") != 3:
            return None
        body, _, mac = token[len(prefix):].partition(".")
        expected = _b64url(hmac.new(self._token_secret, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(_b64url_decode(body))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    # -- messages:send -------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        return await self.handle_provider_request(request, self._accept)

    def _authorize(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            return self._auth_error("CREDENTIALS_MISSING", MSG_CREDENTIALS_MISSING)
        payload = self.check_token(token.strip()) if scheme.lower() == "bearer" else None
        if payload is None:
            return self._auth_error("ACCESS_TOKEN_TYPE_UNSUPPORTED")
        if int(payload.get("exp", 0)) <= time.time():
            return self._auth_error("ACCESS_TOKEN_EXPIRED")
        if not FCM_SCOPES & set(payload.get("scp") or []):
            return self._auth_error("ACCESS_TOKEN_SCOPE_INSUFFICIENT", MSG_SCOPES)
        project = request.match_info["project"]
        if payload.get("prj") and payload["prj"] != project:
            return self._auth_error(
                "IAM_PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            )
        return None

    def _invalid(self, exc: FcmInvalid) -> web.Response:
        details: list[dict[str, Any]] = [self.fcm_detail(exc.fcm_code)]
        violation: dict[str, Any] = {"description": exc.message}
        if exc.field:
            violation = {"field": exc.field, "description": exc.message}
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [violation]})
        self.log.info("fcm rejected HTTP 400 (%s)", exc.message[:120])
        return self.google_error(400, exc.message, details)

    def _accept(self, request: web.Request, body: bytes) -> web.Response:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        try:
            payload = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError) as exc:
            return self._invalid(FcmInvalid(f"Invalid JSON payload received. {exc}"))
        try:
            message, validate_only = validate_send(payload)
        except FcmInvalid as exc:
            return self._invalid(exc)

        project = request.match_info["project"]
        token = message.get("token")
        if isinstance(token, str):
            lowered = token.lower()
            for prefix, (status, text, code, headers) in RESERVED_TOKENS.items():
                if lowered.startswith(prefix):
                    self.log.info("fcm reserved token %s*: HTTP %d %s", prefix, status, code)
                    details = [self.fcm_detail(code)]
                    if code == "INVALID_ARGUMENT":
                        details.append({
                            "@type": BAD_REQUEST_TYPE,
                            "fieldViolations": [{"field": "message.token", "description": text}],
                        })
                    return self.google_error(status, text, details, headers=headers or None)

        if validate_only:
            return web.json_response({"name": f"projects/{project}/messages/fake_message_id"})
        name = self._store(project, message)
        return web.json_response({"name": name})

    def _store(self, project: str, message: dict[str, Any]) -> str:
        message_id = f"0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
        name = f"projects/{project}/messages/{message_id}"
        notification = message.get("notification") or {}
        if "token" in message:
            target_type, to = "token", message["token"]
        elif "topic" in message:
            target_type, to = "topic", "/topics/" + message["topic"].removeprefix("/topics/")
        else:
            target_type, to = "condition", message["condition"]
        stored = StoredMessage(
            id=uuid.uuid4().hex,
            provider=self.name,
            channel="push",
            message_id=message_id,
            to=to,
            from_=project,
            subject=notification.get("title"),
            text=notification.get("body"),
            extra={
                "name": name,
                "project": project,
                "target_type": target_type,
                "token": message.get("token"),
                "topic": message.get("topic"),
                "condition": message.get("condition"),
                "notification": notification or None,
                "image": notification.get("image"),
                "data": message.get("data") or {},
                "android": message.get("android"),
                "apns": message.get("apns"),
                "webpush": message.get("webpush"),
                "fcm_options": message.get("fcm_options"),
            },
        )
        stored.record_event("accepted", int(time.time()), message_id)
        self.ctx.store.add(stored)
        self.log.info("fcm accepted %s (%s)", message_id, target_type)
        return name
