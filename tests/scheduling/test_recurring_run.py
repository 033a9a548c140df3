"""Running a recurring send: once per crontab time however often beat triggers it, nothing
when disabled, refusals recorded rather than retried."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apps.notifications.models import Delivery, Notification
from apps.scheduling.models import RecurringSend
from apps.scheduling.services import recurring_send_create, recurring_send_run
from apps.scheduling.tasks import recurring_send_task
from apps.segments.models import Segment
from apps.templates.models import Template
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


def at(hour: int, minute: int, second: int = 0, day: int = 5) -> datetime:
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def daily(client_tenant: Any, email_template: Template) -> RecurringSend:
    """Every day at 09:00 in Paris (08:00 UTC in January) to two recipients."""
    RecipientFactory(client=client_tenant, external_id="ada")
    RecipientFactory(client=client_tenant, external_id="bob")
    return recurring_send_create(client=client_tenant, name="Daily", template=email_template,
                                 variables={"name": "x"}, recipient_ids=["ada", "bob"],
                                 minute="0", hour="9", timezone="Europe/Paris")


def test_two_runs_for_the_same_minute_send_once(daily: RecurringSend) -> None:
    first = recurring_send_run(recurring_send=daily, now=at(8, 0, 1))
    second = recurring_send_run(recurring_send=daily, now=at(8, 0, 40))
    late = recurring_send_run(recurring_send=daily, now=at(8, 7))  # a delayed duplicate tick

    assert first.status == "sent" and first.scheduled_for == at(8, 0)
    assert second.status == late.status == "already_ran"
    [notification] = Notification.objects.all()
    assert notification.idempotency_key == f"recurring:{daily.id}:20260105T0800Z#0"
    assert notification.metadata["scheduled_for"] == "2026-01-05T08:00:00+00:00"
    assert Delivery.objects.count() == 2
    daily.refresh_from_db()
    assert daily.last_run_at == at(8, 0, 1) and daily.last_scheduled_for == at(8, 0)
    assert daily.last_notification_ids == [str(notification.id)]


def test_the_next_crontab_time_sends_again(daily: RecurringSend) -> None:
    recurring_send_run(recurring_send=daily, now=at(8, 0))
    assert recurring_send_run(recurring_send=daily, now=at(8, 0, day=6)).status == "sent"
    assert Notification.objects.count() == 2


def test_the_idempotency_key_stops_a_second_send_even_without_the_marker(
    daily: RecurringSend
) -> None:
    first = recurring_send_run(recurring_send=daily, now=at(8, 0))
    RecurringSend.objects.filter(id=daily.id).update(last_scheduled_for=None)
    again = recurring_send_run(recurring_send=daily, now=at(8, 0, 30))
    assert again.notifications == first.notifications
    assert Notification.objects.count() == 1


def test_a_disabled_schedule_does_nothing(daily: RecurringSend) -> None:
    RecurringSend.objects.filter(id=daily.id).update(enabled=False)
    assert recurring_send_run(recurring_send=daily, now=at(8, 0)).status == "disabled"
    assert not Notification.objects.exists()


def test_unknown_ids_and_recipients_without_an_address_are_skipped(
    client_tenant: Any, email_template: Template
) -> None:
    RecipientFactory(client=client_tenant, external_id="ada")
    RecipientFactory(client=client_tenant, external_id="no_email", email="")
    recurring_send = recurring_send_create(
        client=client_tenant, name="r", template=email_template, variables={"name": "x"},
        recipient_ids=["ada", "no_email", "deleted_since"], minute="*", hour="*")
    result = recurring_send_run(recurring_send=recurring_send, now=at(8, 0))
    assert result.status == "sent" and result.recipients == 1
    assert list(Delivery.objects.values_list("recipient__external_id", flat=True)) == ["ada"]


def test_a_refused_send_is_recorded_and_not_retried(daily: RecurringSend) -> None:
    RecurringSend.objects.filter(id=daily.id).update(variables={})
    result = recurring_send_run(recurring_send=daily, now=at(8, 0))
    assert result.status == "failed" and result.error_code == "missing_variables"
    daily.refresh_from_db()
    assert daily.last_error.startswith("missing_variables")
    assert daily.last_scheduled_for == at(8, 0)
    assert recurring_send_run(recurring_send=daily, now=at(8, 1)).status == "already_ran"
    assert not Notification.objects.exists()


def test_a_segment_schedule_sends_one_notification_per_chunk(
    client_tenant: Any, email_template: Template, pro_segment: Segment, settings: Any
) -> None:
    settings.MAX_RECIPIENTS_PER_REQUEST = 2
    recurring_send = recurring_send_create(
        client=client_tenant, name="Weekly", template=email_template, variables={"name": "x"},
        segment=pro_segment, minute="0", hour="10", day_of_week="mon")
    result = recurring_send_run(recurring_send=recurring_send, now=at(10, 30))  # Monday 5 Jan
    assert [n.recipient_count for n in result.notifications] == [2, 1]
    assert [n.metadata["chunk"] for n in result.notifications] == [0, 1]
    assert {n.metadata["segment"] for n in result.notifications} == {"pro"}
    assert recurring_send_run(recurring_send=recurring_send, now=at(10, 31)).status == "already_ran"
    assert Notification.objects.count() == 2


def test_the_task_runs_the_schedule_for_the_current_minute(
    client_tenant: Any, email_template: Template
) -> None:
    RecipientFactory(client=client_tenant, external_id="ada")
    every_minute = recurring_send_create(client=client_tenant, name="m", template=email_template,
                                         variables={"name": "x"}, recipient_ids=["ada"],
                                         minute="*", hour="*")
    outcome = recurring_send_task(str(every_minute.id))
    assert outcome["status"] == "sent" and len(outcome["notifications"]) == 1
    again = recurring_send_task(str(every_minute.id))  # "sent" only if a minute boundary passed
    assert Notification.objects.count() == (1 if again["status"] == "already_ran" else 2)
    assert recurring_send_task("6a1f3e0e-0000-4000-8000-000000000000") == {"status": "missing"}


def test_runs_count_against_the_daily_quota_and_a_refusal_is_recorded(
    daily: RecurringSend, client_tenant: Any, settings: Any
) -> None:
    """Two deliveries per run: with a quota of 3 the first run sends, the second is refused
    whole — recorded in last_error and the audit log, nothing sent, nothing charged."""
    from apps.audit.models import AuditLog
    from apps.clients.quotas import deliveries_quota_used

    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 3}
    assert recurring_send_run(recurring_send=daily, now=at(8, 0)).status == "sent"
    assert deliveries_quota_used(client=client_tenant) == 2

    refused = recurring_send_run(recurring_send=daily, now=at(8, 0, day=6))

    assert refused.status == "failed" and refused.error_code == "quota_exceeded"
    daily.refresh_from_db()
    assert daily.last_error.startswith("quota_exceeded: Daily delivery quota reached")
    assert daily.last_scheduled_for == at(8, 0, day=6)  # not retried by the next tick
    assert Notification.objects.count() == 1
    assert deliveries_quota_used(client=client_tenant) == 2
    row = AuditLog.objects.filter(action="schedule.run").order_by("-id").first()
    assert row is not None and row.changes["status"] == "failed"
    assert row.changes["error"].startswith("quota_exceeded")
    # A manual run is refused the same way (422 through the API).
    assert recurring_send_run(recurring_send=daily, manual_key="now").error_code == "quota_exceeded"


def test_a_run_that_rolls_back_refunds_its_quota(
    daily: RecurringSend, client_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.clients.quotas import deliveries_quota_used
    from apps.scheduling import services

    def broken_audit(**kwargs: Any) -> None:
        raise RuntimeError("the audit insert failed")

    monkeypatch.setattr(services, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        recurring_send_run(recurring_send=daily, now=at(8, 0))
    assert deliveries_quota_used(client=client_tenant) == 0


def test_a_local_send_time_delivers_each_run_at_that_time_in_each_recipients_zone(
    daily: RecurringSend, client_tenant: Any
) -> None:
    from apps.recipients.models import Recipient
    from apps.scheduling.services import recurring_send_update

    Recipient.objects.filter(external_id="ada").update(timezone="Asia/Tokyo")
    Recipient.objects.filter(external_id="bob").update(timezone="America/New_York")
    recurring_send_update(recurring_send=daily, hour="0", timezone="UTC",
                          local_send_time=datetime(2000, 1, 1, 9, 0).time())

    result = recurring_send_run(recurring_send=daily, now=datetime.now(UTC))

    assert result.status == "sent"
    for delivery in Delivery.objects.select_related("recipient"):
        local = delivery.due_at.astimezone(ZoneInfo(delivery.recipient.timezone))
        assert (local.hour, local.minute) == (9, 0)
        assert delivery.status == "scheduled"
