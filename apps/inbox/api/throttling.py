"""Per-recipient request throttle for the inbox API (INBOX_THROTTLE_RATE, default 300/min):
the GCRA of apps/clients/throttling.py keyed by the token's recipient, so one browser tab in a
loop cannot spend its client's API budget or load the database. Fails open if Redis is down."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.clients.throttling import WindowThrottle

from ..tokens import InboxPrincipal


class InboxRecipientThrottle(WindowThrottle):
    what = "inbox throttle"

    def counted(self, request: Any) -> tuple[str, str] | None:
        principal = request.user
        rate = settings.INBOX_THROTTLE_RATE
        if not isinstance(principal, InboxPrincipal) or not rate:
            return None
        return rate, f"notifyhub:throttle:inbox:{principal.recipient_pk}"
