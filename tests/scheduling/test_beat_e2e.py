"""End to end with real processes: a recurring send created over the API → PeriodicTask row →
celery beat's DatabaseScheduler fires it at the next minute → worker runs
scheduling.recurring_send_task → notification → SendGrid SDK → sandbox → `delivered`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from apps.notifications.models import Delivery, Notification
from apps.scheduling.models import RecurringSend
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory, api_key_for
from tests.support.processes import DatabaseBeatProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def database_beat(worker_env: dict[str, str]) -> Iterator[DatabaseBeatProcess]:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    with DatabaseBeatProcess(worker_env) as beat:
        yield beat


def test_beat_runs_a_recurring_send_on_its_crontab_and_it_is_delivered(
    clean_sandbox: Any, start_worker: Any, database_beat: DatabaseBeatProcess
) -> None:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    RecipientFactory(client=tenant, external_id="ada", email="ada@example.com")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
    response = api.post("/api/v1/schedules", {
        "name": "Every minute", "template_id": "welcome", "variables": {"name": "Ada"},
        "recipient_ids": ["ada"], "minute": "*", "hour": "*", "timezone": "America/New_York",
    }, format="json")
    assert response.status_code == 201, response.json()
    schedule_id = response.json()["id"]
    worker = start_worker()

    # The crontab fires at the next minute boundary (≤ 60 s), then the send takes ~1 s.
    def delivered() -> bool:
        return Delivery.objects.filter(notification__client=tenant, status="delivered").exists()

    try:
        wait_for(delivered, timeout=100, message="the scheduled notification delivered")
    except AssertionError:
        print(database_beat.log_text()[-4000:], worker.log_text()[-4000:])
        raise

    notification = Notification.objects.get(client=tenant)
    recurring_send = RecurringSend.objects.get(id=schedule_id)
    assert recurring_send.last_scheduled_for is not None
    assert recurring_send.last_scheduled_for.second == 0
    assert recurring_send.last_notification_ids == [str(notification.id)]
    assert notification.idempotency_key == (
        f"recurring:{schedule_id}:{recurring_send.last_scheduled_for:%Y%m%dT%H%MZ}#0")
    assert notification.metadata["recurring_send"] == schedule_id
    [message] = clean_sandbox.messages(to="ada@example.com")
    assert message["subject"] == "Hello Ada"
    assert "scheduling.recurring_send_task" in worker.log_text()
