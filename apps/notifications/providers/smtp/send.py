"""Email through any SMTP server, with Django's SMTP email backend: the email failover."""

from __future__ import annotations

import smtplib
from typing import Any

from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid

from ..base import OutboundMessage, Provider, SendResult


def _smtp_result(provider: str, code: int, text: str) -> SendResult:
    if 400 <= code < 500:
        return SendResult.retryable(provider, f"smtp_{code}", text)
    # 550/551/553 on a recipient: the mailbox does not exist (a hard bounce).
    return SendResult.permanent(provider, f"smtp_{code}", text, suppress=code in (550, 551, 553))


class SmtpProvider(Provider):
    name = "smtp"
    channel = "email"
    account_settings = ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_USE_TLS")
    required_settings = ("SMTP_HOST", "SMTP_PORT")

    def build_payload(self, message: OutboundMessage) -> EmailMultiAlternatives:
        if not message.to:
            raise ValueError("No email address.")
        email = EmailMultiAlternatives(
            subject=message.subject or "(no subject)",
            body=message.text or "",
            from_email=message.from_address or self.setting("DEFAULT_FROM_EMAIL"),
            to=[message.to],
            headers={
                **message.headers,
                "Message-ID": make_msgid(domain="notifyhub.local"),
                "X-NotifyHub-Delivery-Id": message.delivery_id,
            },
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def call(self, payload: EmailMultiAlternatives, message: OutboundMessage) -> SendResult:
        connection: Any = get_connection(
            "django.core.mail.backends.smtp.EmailBackend",
            host=self.setting("SMTP_HOST"), port=self.setting("SMTP_PORT"),
            username=self.setting("SMTP_USERNAME") or None,
            password=self.setting("SMTP_PASSWORD") or None,
            use_tls=bool(self.setting("SMTP_USE_TLS")), timeout=self.setting("SMTP_TIMEOUT_SECONDS"),
            fail_silently=False,
        )
        payload.connection = connection
        try:
            payload.send()
        except smtplib.SMTPConnectError as exc:
            # The server would not take a session at all (a 421/554 greeting, then it hung
            # up): the provider is unreachable, as a refused or reset connection is.
            return SendResult.retryable(self.name, "connection_error",
                                        f"SMTP greeting {exc.smtp_code}: {_text(exc.smtp_error)}"[:300])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return _smtp_result(self.name, int(code), _text(text))
        except smtplib.SMTPResponseException as exc:
            return _smtp_result(self.name, int(exc.smtp_code), _text(exc.smtp_error))
        except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            return SendResult.retryable(self.name, "connection_error", type(exc).__name__)
        except smtplib.SMTPException as exc:  # e.g. AUTH configured but not offered
            return SendResult.retryable(self.name, "smtp_error", f"{type(exc).__name__}: {exc}"[:300])
        except OSError as exc:  # refused, unreachable, DNS
            return SendResult.retryable(self.name, "connection_error", type(exc).__name__)
        return SendResult.sent(self.name, str(payload.extra_headers["Message-ID"]).strip("<>"))


def _text(value: bytes | str) -> str:
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))[:500]
