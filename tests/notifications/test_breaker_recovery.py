"""The email breaker after SendGrid's outage, through the real dispatch and the sandbox: once
its open period ends, the next chunk probes SendGrid and closes the breaker, and email goes
back to SendGrid."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from apps.notifications import gate
from apps.notifications.dispatch import deliveries_dispatch
from apps.notifications.models import Delivery
from apps.notifications.providers.registry import get_provider
from apps.notifications.services import notification_send

pytestmark = pytest.mark.django_db


def _send(client: Any, prefix: str, count: int) -> list[str]:
    notification = notification_send(
        client=client, template_id="welcome", variables={"name": "Ada"},
        recipients=[{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"} for i in range(count)],
    ).notification
    return [str(d.id) for d in notification.deliveries.all()]


def _providers(ids: list[str]) -> collections.Counter[str]:
    return collections.Counter(Delivery.objects.filter(id__in=ids).values_list("provider", flat=True))


def test_after_sendgrid_recovers_the_next_chunk_probes_it_and_closes_the_breaker(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, settings: Any
) -> None:
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "open_seconds": 1,
                                "backoff_multiplier": 1, "min_requests": 5}
    gate.reset_caches()
    breaker = gate.breaker_for(gate.account_name(get_provider("sendgrid")))
    # SendGrid goes down: the breaker opens and email fails over to SMTP.
    clean_sandbox.control(provider="sendgrid", down=True)
    during = _send(client_tenant, "a", 30)
    deliveries_dispatch(delivery_ids=during)
    # Open (or, on a slow machine, already half-open: the open period is 1 s here).
    assert breaker.state() in ("open", "half_open")
    assert _providers(during)["smtp"] > 0

    # SendGrid is back; the open period ends.
    clean_sandbox.control(provider="sendgrid", down=False)
    time.sleep(1.1)
    after = _send(client_tenant, "b", 30)
    deliveries_dispatch(delivery_ids=after)

    # The chunk's probes (several at a time) succeeded: closed within that one chunk.
    assert breaker.state() == "closed"
    assert _providers(after)["sendgrid"] >= settings.CIRCUIT_BREAKER["half_open_successes"]
    again = _send(client_tenant, "c", 30)
    deliveries_dispatch(delivery_ids=again)
    assert _providers(again) == {"sendgrid": 30}
    assert all(d["provider"] in ("sendgrid", "smtp") for d in clean_sandbox.messages())
