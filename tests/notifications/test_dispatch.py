"""The worker side, run in-process against the real sandbox through the SendGrid SDK."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.notifications.dispatch import deliveries_claim, deliveries_dispatch
from apps.notifications.models import Delivery, Notification
from apps.notifications.relay import relay_sweep
from apps.notifications.services import notification_send
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def accept(client: Any, *recipients: str, template: str = "welcome", **kwargs: Any) -> Notification:
    outcome = notification_send(
        client=client,
        recipients=[{"id": r.split("@")[0], "email": r} for r in recipients],
        template_id=template,
        variables=kwargs.pop("variables", {"name": "Ada"}),
        **kwargs,
    )
    return outcome.notification


def test_dispatch_renders_and_sends_through_sendgrid_and_records_sent(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()

    report = deliveries_dispatch(delivery_ids=[str(delivery.id)])

    assert report.sent == 1
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert delivery.provider == "sendgrid"
    assert delivery.attempts == 1
    [message] = clean_sandbox.messages(custom_args={"notifyhub_delivery_id": str(delivery.id)})
    assert message["to"] == "ada@example.com"
    assert message["subject"] == "Hello Ada"
    assert "Hi Ada, this is ada." in message["text"]
    assert delivery.provider_message_id == message["message_id"]
    assert list(delivery.events.values_list("event", flat=True))[:3] == ["accepted", "claimed", "sent"]
    notification.refresh_from_db()
    assert notification.status == "completed"


def test_a_chunk_renders_each_recipient_its_own_message(
    client_tenant: Any, clean_sandbox: Any
) -> None:
    """Several recipients of one notification dispatched in one chunk: a template reading the
    recipient gets each one's own text; one that does not is rendered once for the chunk,
    and every message still carries its own recipient's unsubscribe link."""
    TemplateFactory(client=client_tenant, key="own", version__subject="Hi {{ name }}",
                    version__text_body="For {{ recipient.id }} from {{ name }}")
    TemplateFactory(client=client_tenant, key="same", version__subject="Hi {{ name }}",
                    version__text_body="Same for all, {{ name }}", category="news")
    people = ["p1@example.com", "p2@example.com", "p3@example.com"]
    for key in ("own", "same"):
        notification = accept(client_tenant, *people, template=key, variables={"name": key})
        report = deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
        assert report.sent == 3

    def sent(text: str) -> list[dict[str, Any]]:
        return sorted((m for m in clean_sandbox.messages() if text in m["text"]),
                      key=lambda m: m["to"])

    assert [(m["to"], m["text"]) for m in sent("For ")] == [
        (f"p{i}@example.com", f"For p{i} from own") for i in (1, 2, 3)]
    same = sent("Same for all")
    assert [(m["to"], m["text"], m["subject"]) for m in same] == [
        (f"p{i}@example.com", "Same for all, same", "Hi same") for i in (1, 2, 3)]
    links = {m["headers"]["List-Unsubscribe"] for m in same}
    assert len(links) == 3


def test_renders_alike_only_when_nothing_reads_the_recipient_or_chance() -> None:
    from apps.templates.rendering import renders_alike

    assert renders_alike(_Version(subject="Hi {{ name }}", text_body="{{ name }}"), "email")
    assert not renders_alike(_Version(subject="Hi", html_body="{{ recipient.id }}"), "email")
    # An SMS renders only its body: the email's HTML reading the recipient does not matter.
    assert renders_alike(_Version(sms_body="plain", html_body="{{ recipient.id }}"), "sms")
    assert not renders_alike(_Version(sms_body="{{ ['a', 'b'] | random }}"), "sms")


class _Version:
    """The source fields rendering reads, with a fresh id (the check is cached per id)."""

    def __init__(self, **parts: str) -> None:
        import uuid

        self.id = uuid.uuid4()
        for name in ("subject", "text_body", "html_body", "sms_body", "whatsapp_body",
                     "push_title", "push_body"):
            setattr(self, name, parts.get(name, ""))
        self.push_data: dict[str, str] = {}


def test_the_provider_call_logs_with_the_tasks_request_id(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider call runs in a sender thread; its log lines (here the HTTP client's line
    for the Twilio request) carry the request id of the task (here: of the caller) that
    dispatched it."""
    import logging

    from apps.core.logging import RequestIdFilter, request_id_var

    notification = notification_send(
        client=client_tenant, recipients=[{"id": "sam", "phone": "+15005550006"}],
        template_id="welcome", variables={"name": "Sam"}, channels=["sms"]).notification
    caplog.handler.addFilter(RequestIdFilter())
    token = request_id_var.set("req-thread-7")
    try:
        with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
            report = deliveries_dispatch(
                delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    finally:
        request_id_var.reset(token)
    assert report.sent == 1
    calls = [r for r in caplog.records
             if r.name == "urllib3.connectionpool" and "Messages.json" in r.getMessage()]
    assert calls and all(r.threadName != "MainThread" for r in calls)
    assert {getattr(r, "request_id", None) for r in calls} == {"req-thread-7"}


def test_html_variables_are_escaped_in_the_html_part_only(
    client_tenant: Any, clean_sandbox: Any
) -> None:
    TemplateFactory(client=client_tenant, key="esc", version__subject="Hi {{ name }}",
                    version__text_body="{{ name }}", version__html_body="<p>{{ name }}</p>")
    notification = accept(client_tenant, "x@example.com", template="esc",
                          variables={"name": "<script>x</script>"})
    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    [message] = clean_sandbox.messages(to="x@example.com")
    assert message["html"] == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert message["text"] == "<script>x</script>"


def test_a_delivery_is_claimed_once_even_if_dispatched_twice(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    notification = accept(client_tenant, "ada@example.com")
    ids = [str(notification.deliveries.get().id)]
    deliveries_dispatch(delivery_ids=ids)
    second = deliveries_dispatch(delivery_ids=ids)
    assert second.claimed == 0
    assert len(clean_sandbox.messages(to="ada@example.com")) == 1


def test_claim_takes_only_claimable_and_due_rows(client_tenant: Any, email_template: Any) -> None:
    notification = accept(client_tenant, "a@example.com", "b@example.com")
    a, b = notification.deliveries.order_by("address")
    Delivery.objects.filter(id=b.id).update(status="retrying", due_at=timezone.now() + timedelta(minutes=1))
    claimed = deliveries_claim(delivery_ids=[str(a.id), str(b.id)])
    assert claimed == {str(a.id): 1}
    assert deliveries_claim(delivery_ids=[str(a.id)]) == {}


def test_provider_5xx_schedules_a_retry_with_backoff(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    clean_sandbox.control(fail_next=1, fail_status=503)
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()

    report = deliveries_dispatch(delivery_ids=[str(delivery.id)])

    assert report.retrying == 1
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    assert delivery.error_code == "http_503"
    assert delivery.due_at is not None and delivery.due_at > timezone.now()
    assert clean_sandbox.messages() == []


def test_429_retry_waits_at_least_retry_after(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    clean_sandbox.control(fail_next=1, fail_status=429, retry_after=30)
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()
    deliveries_dispatch(delivery_ids=[str(delivery.id)])
    delivery.refresh_from_db()
    assert delivery.error_code == "rate_limited"
    assert delivery.due_at is not None
    assert delivery.due_at - timezone.now() > timedelta(seconds=25)


def test_retryable_failures_end_failed_after_the_last_attempt(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, settings: Any
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 3
    clean_sandbox.control(fail_next=10, fail_status=500)
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()
    for _ in range(3):
        Delivery.objects.filter(id=delivery.id).update(due_at=None)
        deliveries_dispatch(delivery_ids=[str(delivery.id)])
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.attempts == 3
    assert delivery.error_code == "http_500"
    notification.refresh_from_db()
    assert notification.status == "failed"
    assert clean_sandbox.stats()["by_status"].get("500") == 3


def test_provider_rejection_is_permanent_and_not_retried(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, settings: Any
) -> None:
    settings.SENDGRID_API_KEY = "not-the-sandbox-key"
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()
    report = deliveries_dispatch(delivery_ids=[str(delivery.id)])
    assert report.failed == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.attempts) == ("failed", "provider_auth_error", 1)


def test_unreachable_provider_is_retryable(
    client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.SENDGRID_API_HOST = "http://127.0.0.1:9"
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()
    deliveries_dispatch(delivery_ids=[str(delivery.id)])
    delivery.refresh_from_db()
    assert delivery.status == "retrying"
    assert delivery.error_code == "connection_error"




def test_relay_sweep_recovers_a_delivery_whose_worker_died_mid_send(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()
    deliveries_claim(delivery_ids=[str(delivery.id)])  # claimed, then the worker "dies"
    Delivery.objects.filter(id=delivery.id).update(lease_until=timezone.now() - timedelta(seconds=1))

    report = relay_sweep()

    assert report.recovered_from_sending == 1
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert delivery.events.filter(event="requeued").exists()
    deliveries_dispatch(delivery_ids=[str(delivery.id)])
    delivery.refresh_from_db()
    assert delivery.status in ("sent", "delivered")  # (the sandbox's receipt may be in already)
    assert delivery.attempts == 2


def test_relay_sweep_releases_due_scheduled_sends_and_leaves_future_ones(
    client_tenant: Any, email_template: Any
) -> None:
    later = accept(client_tenant, "a@example.com", scheduled_at=timezone.now() + timedelta(hours=1))
    due = accept(client_tenant, "b@example.com", scheduled_at=timezone.now() + timedelta(seconds=30))
    Delivery.objects.filter(notification=due).update(
        lease_until=timezone.now() - timedelta(seconds=1), due_at=timezone.now() - timedelta(seconds=1)
    )
    report = relay_sweep()
    assert report.released_scheduled == 1
    assert due.deliveries.get().status == "queued"
    assert later.deliveries.get().status == "scheduled"
    due.refresh_from_db()
    assert due.status == "pending"


def test_relay_sweep_ignores_rows_within_their_lease(client_tenant: Any, email_template: Any) -> None:
    accept(client_tenant, "a@example.com")
    assert relay_sweep().requeued == 0


def test_a_delivery_whose_worker_dies_on_every_attempt_ends_failed_with_the_reason(
    client_tenant: Any, email_template: Any, settings: Any
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 2
    notification = accept(client_tenant, "ada@example.com")
    delivery = notification.deliveries.get()
    for _ in range(2):
        deliveries_claim(delivery_ids=[str(delivery.id)])
        Delivery.objects.filter(id=delivery.id).update(lease_until=timezone.now() - timedelta(seconds=1))
        relay_sweep()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", "worker_lost")
    notification.refresh_from_db()
    assert notification.status == "failed"


def test_each_recipient_gets_their_locales_version_pinned_at_accept(
    client_tenant: Any, clean_sandbox: Any
) -> None:
    from apps.templates.services import template_version_create

    template = TemplateFactory(client=client_tenant, key="hello", version__subject="Hello {{ name }}")
    template_version_create(template=template, locale="fr", subject="Bonjour {{ name }}",
                            text_body="Salut")
    notification = notification_send(
        client=client_tenant, template_id="hello", variables={"name": "Ada"},
        recipients=[{"id": "qc", "email": "qc@example.com", "locale": "fr-CA"},
                    {"id": "uk", "email": "uk@example.com", "locale": "en-GB"},
                    {"id": "de", "email": "de@example.com", "locale": "de"}],
    ).notification
    # Publishing a newer French version now changes nothing for this notification.
    template_version_create(template=template, locale="fr", subject="Nouveau {{ name }}", text_body="x")
    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    subjects = {m["to"]: m["subject"] for m in clean_sandbox.messages()}
    assert subjects == {"qc@example.com": "Bonjour Ada", "uk@example.com": "Hello Ada",
                        "de@example.com": "Hello Ada"}


def test_a_locale_version_missing_a_variable_is_422(client_tenant: Any) -> None:
    from apps.core.exceptions import ApplicationError
    from apps.templates.services import template_version_create

    template = TemplateFactory(client=client_tenant, key="hello")
    template_version_create(template=template, locale="fr", subject="Bonjour {{ prenom }}", text_body="x")
    with pytest.raises(ApplicationError) as exc:
        notification_send(client=client_tenant, template_id="hello", variables={"name": "Ada"},
                          recipients=[{"id": "qc", "email": "qc@example.com", "locale": "fr"}])
    assert exc.value.code == "missing_variables"
    assert "variables.prenom" in exc.value.fields


def test_a_chunk_reads_its_rows_in_a_constant_number_of_queries(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    """Whatever the chunk's size: no query per delivery (recipient, notification, client,
    template version, preferences, suppressions are each read once for the chunk)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def reads(count: int, prefix: str) -> int:
        notification = accept(client_tenant, *[f"{prefix}{i}@example.com" for i in range(count)])
        with CaptureQueriesContext(connection) as queries:
            report = deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
        assert report.sent == count
        return sum(1 for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT"))

    reads(1, "warm")
    assert reads(6, "few") == reads(15, "many")
    # A single send (or a critical task) reads its delivery, notification and client at once.
    assert reads(1, "one") == reads(6, "six") - 2


def test_one_delivery_costs_a_fixed_list_of_statements(
    client_tenant: Any, email_template: Any, clean_sandbox: Any
) -> None:
    """What a single send's task says to PostgreSQL, one statement each: the claim, one read
    of the delivery with its recipient, notification and client, the preferences, the
    suppression list, the webhook subscriptions (uncached in tests), the outcome, then the
    status refresh (lock, then aggregate and update in one statement, in one transaction)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    accept(client_tenant, "warm@example.com")  # template version cached in the process
    deliveries_dispatch(delivery_ids=[str(d.id) for d in Delivery.objects.all()])
    notification = accept(client_tenant, "ada@example.com")
    ids = [str(d.id) for d in notification.deliveries.all()]
    with CaptureQueriesContext(connection) as queries:
        report = deliveries_dispatch(delivery_ids=ids)
    assert report.sent == 1
    statements = [q["sql"].lstrip().split(None, 1)[0].upper() for q in queries.captured_queries]
    # load, preferences, suppressions, webhooks; the refresh's lock
    assert statements.count("SELECT") == 5, [q["sql"][:200] for q in queries.captured_queries]
    assert len(statements) == 10, [q["sql"][:200] for q in queries.captured_queries]


def test_one_delivery_costs_a_fixed_list_of_redis_commands(
    client_tenant: Any, email_template: Any, clean_sandbox: Any, settings: Any
) -> None:
    """Counted by the Redis server itself: one read of the recipient's cached preferences, one
    fill of the miss (a script; the server counts the SET it runs too), the webhook
    subscriptions' cache generation (the subscriptions themselves are kept in the process
    under it), the gates' scripts."""
    import redis
    from django.conf import settings as django_settings

    settings.WEBHOOKS_SUBSCRIPTIONS_CACHE_SECONDS = 300
    warm = accept(client_tenant, "warm@example.com")
    deliveries_dispatch(delivery_ids=[str(d.id) for d in warm.deliveries.all()])
    notification = accept(client_tenant, "ada@example.com")
    ids = [str(d.id) for d in notification.deliveries.all()]
    server = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    server.config_resetstat()
    assert deliveries_dispatch(delivery_ids=ids).sent == 1
    calls = {k.removeprefix("cmdstat_"): v["calls"]
             for k, v in server.info("commandstats").items()}
    assert calls.get("mget") == 1
    assert calls.get("set") == 1  # the fill's, inside its script
    assert calls.get("evalsha") == 4  # preferences fill, breaker allow, token take, breaker success
    assert calls.get("get", 0) <= 2


def test_the_joined_read_of_a_small_claim_loads_what_the_orm_loads(
    client_tenant: Any, email_template: Any
) -> None:
    """`load_deliveries` of a single send (one prebuilt statement) and of a chunk (the ORM)
    give the same values: decrypted address, JSON fields, the notification and the client."""
    from apps.notifications.dispatch import JOINED_LOAD_MAX, load_deliveries

    notification = accept(client_tenant, *[f"j{i}@example.com" for i in range(JOINED_LOAD_MAX + 1)],
                          metadata={"order": 7}, category="billing")
    ids = sorted(str(i) for i in notification.deliveries.values_list("id", flat=True))
    chunk = {str(d.id): d for d in load_deliveries(ids)}
    for delivery_id in ids:
        [one] = load_deliveries([delivery_id])
        other = chunk[delivery_id]
        for name in ("id", "notification_id", "client_id", "recipient_id", "channel", "priority",
                     "status", "template_version_id", "address", "attempts", "is_test",
                     "created_at"):
            assert getattr(one, name) == getattr(other, name), name
        assert one.address.endswith("@example.com")
        for name in ("external_id", "locale", "timezone", "attributes", "client_id"):
            assert getattr(one.recipient, name) == getattr(other.recipient, name), name
        for name in ("variables", "metadata", "category", "priority", "is_test",
                     "template_version_id"):
            assert getattr(one.notification, name) == getattr(other.notification, name), name
        assert one.notification.metadata == {"order": 7}
        assert one.notification.template_version == other.notification.template_version
        assert one.client.delivery_policy == other.client.delivery_policy
        assert one.client.default_from_email == other.client.default_from_email
        assert one.mode == other.mode
