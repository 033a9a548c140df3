"""An SMTP server (aiosmtpd) in the sandbox process, for Django's SMTP email backend.

It runs on the sandbox's own event loop, started and stopped with the aiohttp app,
on ``SANDBOX_SMTP_PORT`` (default 2525; 0 disables).  No AUTH, no TLS: configure
the client without a username and without STARTTLS.

Recipient conventions (at RCPT time, by local part):
``bounce*`` -> ``550 5.1.1 User unknown``; ``tempfail*`` -> ``451 4.3.0 Try again later``;
anything else is accepted.  Each accepted message is stored once per accepted
recipient (provider ``smtp``, channel ``email``).

One SMTP transaction (MAIL FROM .. end of DATA) counts as one provider request
in ``/sandbox/stats``, recorded with its final SMTP reply code.  The control
settings apply: latency and ``timeout`` delay the reply to DATA, ``fail_next`` /
``fail_rate`` answer DATA with ``451 4.3.0`` (or ``421 4.3.2`` and a closed
connection when ``fail_status`` is 503), ``down`` greets with ``421`` and hangs up.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import logging
import time
import uuid
from email.message import EmailMessage
from typing import Any

import aiohttp
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from .emulator import Emulator, SandboxContext
from .store import StoredMessage, mask_email

HOSTNAME = "sandbox.notifyhub.test"
IDENT = "NotifyHub sandbox ESMTP"
REPLY_DOWN = "421 4.3.2 Service not available, closing transmission channel"
REPLY_TEMPFAIL = "451 4.3.0 Try again later"
REPLY_BOUNCE = "550 5.1.1 User unknown"
REPLY_INJECTED = "451 4.3.0 Requested action aborted: local error in processing (sandbox)"
REPLY_TIMEOUT = "451 4.4.2 Timeout while processing the message (sandbox)"
# Headers named X-NotifyHub-<Name> become custom_args["notifyhub_<name>"] (as SendGrid's).
CUSTOM_HEADER_PREFIX = "x-notifyhub-"


def _local_part(address: str) -> str:
    return address.rsplit("@", 1)[0].lower()


def _reply_code(reply: str) -> int:
    return int(reply[:3])


class SandboxSMTP(SMTP):
    """aiosmtpd's protocol plus the sandbox's per-connection bookkeeping."""

    def __init__(self, provider: SmtpEmulator, **kwargs: Any) -> None:
        super().__init__(provider, **kwargs)
        self.provider = provider
        self.transaction_open = False
        self.refusal: str | None = None

    async def _handle_client(self) -> None:
        if self.provider.control_state().down:
            self.provider.ctx.stats.record_request(self.provider.name)
            self.provider.ctx.stats.record_reset(self.provider.name)
            self.provider.log.info("smtp is down: 421 and hang up")
            await self.push(REPLY_DOWN)
            if self.transport is not None:
                self.transport.close()
            return
        self.provider.connections.add(self)
        try:
            await super()._handle_client()
        finally:
            self.provider.connections.discard(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.provider.end_transaction(self, completed=False)
        super().connection_lost(error)


class SmtpEmulator(Emulator):
    """The SMTP server's handler (aiosmtpd hooks) and the sandbox provider in one."""

    name = "smtp"

    def __init__(self, ctx: SandboxContext) -> None:
        super().__init__(ctx)
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[SandboxSMTP] = set()
        self.port: int | None = None

    def setup(self, app: web.Application) -> None:
        """No HTTP routes: the server is started by ``start()`` with the app."""

    async def start(self, session: aiohttp.ClientSession) -> None:
        await super().start(session)
        config = self.ctx.config
        if config.smtp_port == 0:
            self.log.info("smtp server disabled (SANDBOX_SMTP_PORT=0)")
            return
        if config.log_level != "DEBUG":
            # aiosmtpd logs every SMTP command at INFO.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()

        def factory() -> SandboxSMTP:
            return SandboxSMTP(
                self,
                hostname=HOSTNAME,
                ident=IDENT,
                enable_SMTPUTF8=True,
                data_size_limit=32 * 1024 * 1024,
                timeout=300,
                loop=loop,
            )

        self.server = await loop.create_server(factory, host=config.host, port=config.smtp_port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.log.info("smtp server listening on %s:%d", config.host, self.port)

    async def stop(self) -> None:
        await super().stop()
        if self.server is not None:
            self.server.close()
            for protocol in list(self.connections):
                if protocol.transport is not None:
                    protocol.transport.close()
            await self.server.wait_closed()
            self.server = None

    # -- transactions and stats ----------------------------------------------------

    def begin_transaction(self, server: SandboxSMTP) -> None:
        self.end_transaction(server, completed=False)
        self.ctx.stats.record_request(self.name)
        server.transaction_open, server.refusal = True, None

    def end_transaction(self, server: SandboxSMTP, *, completed: bool, reply: str | None = None) -> None:
        """Record how an open transaction ended: its DATA reply, or (without DATA) the
        last recipient refusal, else an abort."""
        if not server.transaction_open:
            return
        server.transaction_open = False
        if completed and reply is not None:
            self.ctx.stats.record_response(_reply_code(reply), self.name)
        elif server.refusal is not None:
            self.ctx.stats.record_response(_reply_code(server.refusal), self.name)
        else:
            self.ctx.stats.record_aborted(self.name)

    # -- aiosmtpd hooks --------------------------------------------------------------

    async def handle_MAIL(
        self, server: SandboxSMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.begin_transaction(server)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SandboxSMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        local = _local_part(address)
        if local.startswith("bounce"):
            server.refusal = REPLY_BOUNCE
            self.log.info("smtp refused %s: %s", mask_email(address), REPLY_BOUNCE)
            return REPLY_BOUNCE
        if local.startswith("tempfail"):
            server.refusal = REPLY_TEMPFAIL
            self.log.info("smtp refused %s: %s", mask_email(address), REPLY_TEMPFAIL)
            return REPLY_TEMPFAIL
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_RSET(self, server: SandboxSMTP, session: Session, envelope: Envelope) -> str:
        self.end_transaction(server, completed=False)
        return "250 OK"

    async def handle_QUIT(self, server: SandboxSMTP, session: Session, envelope: Envelope) -> str:
        self.end_transaction(server, completed=False)
        return "221 Bye"

    async def handle_DATA(self, server: SandboxSMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._data_reply(server, envelope)
        self.end_transaction(server, completed=True, reply=reply)
        if reply.startswith("421") and server.transport is not None:
            # RFC 5321: 421 closes the channel (after the reply is written).
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def _data_reply(self, server: SandboxSMTP, envelope: Envelope) -> str:
        ctx = self.ctx
        control = self.control_state()
        while control.timeout:
            self.log.info("smtp holding DATA (timeout mode)")
            released = await ctx.control.hold(
                ctx.config.timeout_hold_s,
                gone=lambda: server.transport is None or server.transport.is_closing(),
            )
            if not released:
                return REPLY_TIMEOUT
            control = self.control_state()
        if control.down:
            return REPLY_DOWN
        if control.latency_ms > 0:
            await asyncio.sleep(control.latency_ms / 1000.0)
        if ctx.control.take_failure(self.name):
            reply = REPLY_DOWN if control.fail_status == 503 else REPLY_INJECTED
            self.log.info("smtp injected failure: %s", reply)
            return reply
        messages = self.store_message(envelope)
        return f"250 2.0.0 OK: queued as {messages[0].message_id if messages else '-'}"

    # -- storage ---------------------------------------------------------------------

    def store_message(self, envelope: Envelope) -> list[StoredMessage]:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, str):
            raw = envelope.content.encode("utf-8", "surrogateescape")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        message_id = str(parsed.get("Message-ID", "")).strip().strip("<>") or f"{uuid.uuid4().hex}@{HOSTNAME}"
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        headers: dict[str, str] = {}
        for name, value in parsed.items():
            text = str(value).strip()  # a folded header keeps the space after the colon
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        custom_args = {
            "notifyhub_" + name[len(CUSTOM_HEADER_PREFIX):].lower().replace("-", "_"): str(value).strip()
            for name, value in parsed.items()
            if name.lower().startswith(CUSTOM_HEADER_PREFIX)
        }
        header_to = [addr for _, addr in email.utils.getaddresses(parsed.get_all("To", []))]
        header_cc = [addr for _, addr in email.utils.getaddresses(parsed.get_all("Cc", []))]
        from_name, from_addr = email.utils.parseaddr(str(parsed.get("From", "")))
        visible = {a.lower() for a in header_to + header_cc}
        attachments = [
            {"filename": part.get_filename(), "type": part.get_content_type()}
            for part in parsed.iter_attachments()
        ]
        stored: list[StoredMessage] = []
        now = int(time.time())
        for rcpt in envelope.rcpt_tos:
            message = StoredMessage(
                id=uuid.uuid4().hex,
                provider=self.name,
                channel="email",
                message_id=message_id,
                to=rcpt,
                from_=from_addr or str(envelope.mail_from or ""),
                subject=str(parsed["Subject"]) if parsed["Subject"] is not None else None,
                text=text_part.get_content() if text_part is not None else None,
                html=html_part.get_content() if html_part is not None else None,
                headers=headers,
                custom_args=custom_args,
                extra={
                    "envelope_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "from_name": from_name or None,
                    "cc": header_cc,
                    "bcc": rcpt.lower() not in visible,
                    "reply_to": str(parsed["Reply-To"]) if parsed["Reply-To"] else None,
                    "list_unsubscribe": headers.get("List-Unsubscribe"),
                    "list_unsubscribe_post": headers.get("List-Unsubscribe-Post"),
                    "attachments": attachments,
                    "size": len(raw),
                },
            )
            message.record_event("delivered", now, f"{message_id}:{rcpt}")
            self.ctx.store.add(message)
            stored.append(message)
        shown = mask_email(envelope.rcpt_tos[0]) if envelope.rcpt_tos else "-"
        self.log.info("smtp accepted %s: %d recipient(s) (%s)", message_id, len(stored), shown)
        return stored
