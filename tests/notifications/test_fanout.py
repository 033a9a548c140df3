"""Large sends accepted as a job and expanded by workers (apps/notifications/fanout.py): the
request validates everything and writes the notifications and the job; slices create exactly
the deliveries a small accept would, once, whatever runs them twice or at the same time; the
sweeper resumes a job whose expand task was lost; cancel, delete and erasure stop it."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditLog
from apps.core.crypto import TOKEN_PREFIX
from apps.notifications.fanout import accept_job_expand
from apps.notifications.models import (
    AcceptJob,
    AcceptJobSlice,
    Delivery,
    DeliveryEvent,
    Notification,
)
from apps.notifications.relay import relay_sweep
from apps.notifications.status import notifications_refresh_status
from apps.privacy.services import recipient_erase
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, api_key_for
from tests.notifications.api.helpers import api_with_key, concurrently

SEND = "/api/v1/notifications"
BULK = "/api/v1/notifications/bulk"
N = 230


@pytest.fixture(autouse=True)
def _small_jobs(settings: Any) -> None:
    """The 50,000-recipient shape at a test's scale: a job from 100 deliveries, slices of
    20 then 80 (the first slice small, as in production)."""
    settings.ACCEPT_FANOUT_MIN_DELIVERIES = 100
    settings.ACCEPT_FANOUT_FIRST_SLICE = 20
    settings.ACCEPT_FANOUT_SLICE = 80
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()


def inline(n: int = N) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "email": f"r{i}@example.com"} for i in range(n)]


def send(api: APIClient, recipients: list[Any], **extra: Any) -> Any:
    return api.post(SEND, {"recipients": recipients, "template_id": "welcome",
                           "variables": {"name": "A"}, **extra}, format="json")


def expand_all(job_id: Any) -> int:
    """Runs the job's slices the way the chained tasks do; returns how many ran."""
    ran = 0
    while accept_job_expand(job_id=job_id).expanded:
        ran += 1
    return ran


def queued_tasks(queue: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of the messages waiting on a queue."""
    r = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    out = []
    for raw in r.lrange(queue, 0, -1):
        message = json.loads(raw)
        out.append((message["headers"]["task"],
                    json.loads(base64.b64decode(message["body"]))[0]))
    return out


@pytest.mark.django_db
def test_a_large_send_is_accepted_as_a_job_and_expands_to_its_deliveries_once(
    api: APIClient, client_tenant: Any, email_template: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    RecipientFactory(client=client_tenant, external_id="r7", email="old@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        response = send(api, inline())

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["deliveries"], body["expanding"], body["recipient_count"],
            body["delivery_count"]) == ([], True, N, N)
    notification = Notification.objects.get(id=body["id"])
    assert (notification.status, notification.recipient_count) == ("pending", N)
    job = AcceptJob.objects.get(id=notification.accept_job_id)
    assert (job.slices, job.cursor, job.deliveries_planned) == (4, 0, N)  # 20 + 80 + 80 + 50
    assert not Delivery.objects.filter(notification=notification).exists()
    assert not Recipient.objects.filter(client=client_tenant, external_id="r0").exists()
    assert AuditLog.objects.filter(action="notification.send",
                                   notification_id=notification.id).count() == 1
    assert queued_tasks("normal") == [
        ("notifications.accept_job_expand_task", [str(job.id), 0])]

    with django_capture_on_commit_callbacks(execute=True):
        first = accept_job_expand(job_id=job.id, cursor=0)
    assert (first.expanded, first.created, first.done) == (True, 20, False)
    # A duplicate of that task (redelivered message) does nothing.
    assert not accept_job_expand(job_id=job.id, cursor=0).expanded
    tasks = queued_tasks("normal")
    assert [args for name, args in tasks if name == "notifications.accept_job_expand_task"] == [
        [str(job.id), 1], [str(job.id), 0]]  # newest first
    dispatched = {i for name, args in tasks if name.endswith("dispatch_task") for i in args[0]}
    assert dispatched == {str(i) for i in Delivery.objects.values_list("id", flat=True)}

    assert expand_all(job.id) == 3
    assert not accept_job_expand(job_id=job.id).expanded  # done: nothing more, ever

    deliveries = list(Delivery.objects.filter(notification=notification)
                      .select_related("recipient").order_by("created_at", "id"))
    assert [d.recipient.external_id for d in deliveries] == [f"r{i}" for i in range(N)]
    assert {d.status for d in deliveries} == {"pending"}
    assert deliveries[7].address == "r7@example.com"  # the inline address won over the stored
    assert DeliveryEvent.objects.filter(delivery__notification=notification,
                                        event="accepted").count() == N
    assert Recipient.objects.filter(client=client_tenant, external_id__startswith="r").count() == N
    job.refresh_from_db()
    notification.refresh_from_db()
    assert (job.cursor, job.deliveries_created, job.completed_at is not None) == (4, N, True)
    assert notification.accept_job_id is None
    assert not AcceptJobSlice.objects.filter(job=job).exists()  # the payload is gone
    upserts = AuditLog.objects.filter(action="recipient.upsert", client_id=client_tenant.id)
    assert upserts.count() == 4
    assert {row.actor_type for row in upserts} == {"api_key"}  # the sender, not the worker


@pytest.mark.django_db
def test_a_bulk_request_is_one_job_and_each_item_gets_its_notification_and_delivery(
    api: APIClient, client_tenant: Any, email_template: Any,
) -> None:
    RecipientFactory(client=client_tenant, external_id="known", email="known@example.com")
    items = [{"recipients": [{"id": f"b{i}", "email": f"b{i}@example.com"}],
              "template_id": "welcome", "variables": {"name": "x"}} for i in range(150)]
    items[40] = {"recipients": ["known"], "template_id": "welcome", "variables": {"name": "x"}}

    response = api.post(BULK, {"notifications": items}, format="json")

    assert response.status_code == 202, response.json()
    ids = [n["id"] for n in response.json()["notifications"]]
    assert len(ids) == 150 and AcceptJob.objects.count() == 1
    assert Delivery.objects.count() == 0
    expand_all(AcceptJob.objects.get().id)
    by_notification = dict(Delivery.objects.values_list("notification_id", "recipient__external_id"))
    assert [by_notification[n] for n in [Notification.objects.get(id=i).id for i in ids]] == [
        "known" if i == 40 else f"b{i}" for i in range(150)]
    assert Delivery.objects.get(recipient__external_id="known").address == "known@example.com"


@pytest.mark.django_db(transaction=True)
def test_two_tasks_expanding_the_same_job_at_once_create_every_delivery_once(
    client_tenant: Any, email_template: Any,
) -> None:
    api = api_with_key(api_key_for(client_tenant))
    response = send(api, inline(), channels=["email"])
    assert response.status_code == 202
    job_id = Notification.objects.get(id=response.json()["id"]).accept_job_id

    results = concurrently(3, lambda i: expand_all(job_id))

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 4
    assert Delivery.objects.count() == N
    assert not [k for k, v in Counter(Delivery.objects.values_list("recipient_id", flat=True))
                .items() if v > 1]


@pytest.mark.django_db
def test_a_job_whose_worker_died_between_slices_is_resumed_by_the_sweeper(
    api: APIClient, email_template: Any,
) -> None:
    notification_id = send(api, inline()).json()["id"]
    job = AcceptJob.objects.get(id=Notification.objects.get(id=notification_id).accept_job_id)
    assert accept_job_expand(job_id=job.id, cursor=0).created == 20
    # The worker dies here: the next slice's task is never published. Its lease runs out.
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()
    assert relay_sweep().jobs_republished == 0  # still leased
    AcceptJob.objects.filter(id=job.id).update(lease_until=timezone.now())

    assert relay_sweep().jobs_republished == 1

    assert queued_tasks("normal") == [("notifications.accept_job_expand_task", [str(job.id), 1])]
    assert relay_sweep().jobs_republished == 0  # the lease moved on
    assert not accept_job_expand(job_id=job.id, cursor=0).expanded  # a stale message
    assert expand_all(job.id) == 3
    assert Delivery.objects.filter(notification_id=notification_id).count() == N


@pytest.mark.django_db
@pytest.mark.parametrize("threshold", [100, 10**9], ids=["job", "in-request"])
def test_validation_is_all_or_nothing_with_each_bad_index_named_as_before(
    api: APIClient, client_tenant: Any, email_template: Any, settings: Any, threshold: int,
) -> None:
    """The same errors whether the request would become a job or not; nothing is written."""
    settings.ACCEPT_FANOUT_MIN_DELIVERIES = threshold
    RecipientFactory(client=client_tenant, external_id="nomail", email="", phone="+14155550100")
    RecipientFactory(client=client_tenant, external_id="hasmail", email="h@example.com")
    ok = {"recipients": inline(3), "template_id": "welcome", "variables": {"name": "x"}}
    items = [dict(ok) for _ in range(60)]
    items[7] = {**ok, "recipients": ["ghost"]}
    items[52] = {**ok, "recipients": [*inline(2), "ghost2"]}
    unknown = api.post(BULK, {"notifications": items}, format="json")

    items = [dict(ok) for _ in range(60)]
    items[3] = {**ok, "recipients": ["nomail"]}
    items[9] = {**ok, "recipients": [{"id": "hasmail", "email": ""}]}  # cleared inline
    items[44] = {**ok, "recipients": [{"id": "new", "phone": "+14155550101"}]}
    no_address = api.post(BULK, {"notifications": items}, format="json")
    single = send(api, [*inline(200), "ghost", {"id": "hasmail", "email": ""}])

    assert unknown.status_code == 422, unknown.json()
    assert unknown.json()["error"]["code"] == "unknown_recipient"
    assert set(unknown.json()["error"]["fields"]) == {"notifications[7].recipients[0]",
                                                      "notifications[52].recipients[2]"}
    assert no_address.status_code == 422, no_address.json()
    assert no_address.json()["error"]["code"] == "recipient_missing_address"
    assert set(no_address.json()["error"]["fields"]) == {
        "notifications[3].recipients[0]", "notifications[9].recipients[0]",
        "notifications[44].recipients[0]"}
    assert single.status_code == 422
    assert set(single.json()["error"]["fields"]) == {"recipients[200]"}
    assert Notification.objects.count() == 0
    assert AcceptJob.objects.count() == 0 and Delivery.objects.count() == 0
    assert not Recipient.objects.filter(external_id__in=["r0", "new"]).exists()
    assert Recipient.objects.get(external_id="hasmail").email == "h@example.com"


@pytest.mark.django_db
def test_the_job_payload_holds_no_plaintext_address(api: APIClient, email_template: Any) -> None:
    send(api, inline())
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload, completes::text FROM notifications_acceptjobslice")
        rows = cursor.fetchall()
        cursor.execute("SELECT row_to_json(j)::text FROM notifications_acceptjob j")
        [job_row] = cursor.fetchone()

    assert len(rows) == 4
    for payload, completes in rows:
        assert payload.startswith(TOKEN_PREFIX)
        assert "example.com" not in payload and "@" not in payload
        assert "example.com" not in completes
    assert "example.com" not in job_row


@pytest.mark.django_db
def test_cancel_during_expansion_stops_it(api: APIClient, email_template: Any) -> None:
    notification_id = send(api, inline()).json()["id"]
    job_id = Notification.objects.get(id=notification_id).accept_job_id
    accept_job_expand(job_id=job_id, cursor=0)

    response = api.put(f"{SEND}/{notification_id}/cancel")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert expand_all(job_id) == 3  # the job runs to its end, creating nothing
    statuses = Counter(Delivery.objects.filter(notification_id=notification_id)
                       .values_list("status", flat=True))
    assert statuses == {"cancelled": 20}
    assert AcceptJob.objects.get(id=job_id).items_skipped == N - 20
    assert api.get(f"{SEND}/{notification_id}/status").json()["status"] == "cancelled"


@pytest.mark.django_db
def test_cancel_before_the_first_slice_and_delete_during_expansion(
    api: APIClient, email_template: Any,
) -> None:
    cancelled = send(api, inline()).json()["id"]
    deleted = send(api, inline()).json()["id"]
    jobs = [Notification.objects.get(id=i).accept_job_id for i in (cancelled, deleted)]

    assert api.put(f"{SEND}/{cancelled}/cancel").status_code == 200
    accept_job_expand(job_id=jobs[1], cursor=0)
    assert api.delete(f"{SEND}/{deleted}").status_code == 204
    for job_id in jobs:
        expand_all(job_id)

    assert Notification.objects.get(id=cancelled).status == "cancelled"
    assert Delivery.objects.count() == 0
    assert AcceptJob.objects.filter(completed_at__isnull=False).count() == 2
    assert not AcceptJobSlice.objects.exists()


@pytest.mark.django_db
def test_a_recipient_erased_before_its_slice_is_skipped_not_recreated(
    api: APIClient, client_tenant: Any, email_template: Any,
) -> None:
    erased = RecipientFactory(client=client_tenant, external_id="r150", email="e@example.com")
    stored = RecipientFactory(client=client_tenant, external_id="stored", email="s@example.com")
    notification_id = send(api, [*inline(), "stored"]).json()["id"]
    job_id = Notification.objects.get(id=notification_id).accept_job_id

    recipient_erase(recipient=erased)
    recipient_erase(recipient=stored)
    expand_all(job_id)

    assert Delivery.objects.filter(notification_id=notification_id).count() == N - 1
    assert not Recipient.objects.filter(external_id__in=["r150", "stored"]).exists()
    assert AcceptJob.objects.get(id=job_id).items_skipped == 2


@pytest.mark.django_db
def test_status_is_not_final_while_the_job_is_expanding(api: APIClient, email_template: Any) -> None:
    notification_id = send(api, inline()).json()["id"]
    job_id = Notification.objects.get(id=notification_id).accept_job_id
    assert api.get(f"{SEND}/{notification_id}/status").json()["status"] == "pending"
    accept_job_expand(job_id=job_id, cursor=0)
    # The first slice is sent and delivered before the next is expanded.
    Delivery.objects.filter(notification_id=notification_id).update(status="delivered")
    notifications_refresh_status(notification_ids=[notification_id])

    body = api.get(f"{SEND}/{notification_id}/status").json()
    assert (body["status"], body["counts"]) == ("processing", {"delivered": 20})
    assert Notification.objects.get(id=notification_id).completed_at is None

    expand_all(job_id)
    Delivery.objects.filter(notification_id=notification_id).update(status="delivered")
    notifications_refresh_status(notification_ids=[notification_id])
    body = api.get(f"{SEND}/{notification_id}/status").json()
    assert (body["status"], body["total"]) == ("completed", N)


@pytest.mark.django_db
def test_a_small_send_is_unchanged(api: APIClient, email_template: Any) -> None:
    body = send(api, inline(3)).json()
    assert [d["recipient"] for d in body["deliveries"]] == ["r0", "r1", "r2"]
    assert "expanding" not in body
    assert AcceptJob.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_slice_waits_for_it_and_cancels_what_it_created(
    client_tenant: Any, email_template: Any,
) -> None:
    import threading
    import time

    from django.db import connections, transaction

    from apps.notifications.services import notification_cancel

    api = api_with_key(api_key_for(client_tenant))
    notification_id = send(api, inline()).json()["id"]
    job_id = Notification.objects.get(id=notification_id).accept_job_id
    accept_job_expand(job_id=job_id, cursor=0)
    in_slice = threading.Event()
    cancelled_at: list[float] = []

    def slow_slice() -> float:
        try:
            with transaction.atomic():  # the slice's locks are held until this commits
                accept_job_expand(job_id=job_id, cursor=1)
                in_slice.set()
                time.sleep(0.5)
                return time.monotonic()
        finally:
            connections.close_all()

    def cancel() -> None:
        try:
            in_slice.wait(10)
            notification_cancel(notification=Notification.objects.get(id=notification_id))
            cancelled_at.append(time.monotonic())
        finally:
            connections.close_all()

    canceller = threading.Thread(target=cancel)
    canceller.start()
    committed_at = slow_slice()
    canceller.join(30)
    expand_all(job_id)

    assert cancelled_at and cancelled_at[0] >= committed_at  # it waited for the slice
    statuses = Counter(Delivery.objects.filter(notification_id=notification_id)
                       .values_list("status", flat=True))
    assert statuses == {"cancelled": 100}  # slices 0 and 1, nothing after
    assert Notification.objects.get(id=notification_id).status == "cancelled"


def bulk_items(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"recipients": [{"id": f"b{i}", "email": f"b{i}@example.com"}],
             "template_id": "welcome", "variables": {"name": "x"},
             "metadata": {"batch": "7"}, **extra} for i in range(n)]


@pytest.mark.django_db
def test_a_bulk_requests_send_audit_rows_are_written_by_its_slices_once_in_the_senders_name(
    api: APIClient, client_tenant: Any, email_template: Any,
) -> None:
    items = bulk_items(120)
    items[5] = {**items[5], "recipients": [{"id": f"m{i}", "email": f"m{i}@example.com"}
                                           for i in range(30)]}  # spans slices 0 and 1
    response = api.post(BULK, {"notifications": items}, format="json",
                        HTTP_USER_AGENT="bulk-client/1.0", HTTP_X_REQUEST_ID="req-bulk-7")
    assert response.status_code == 202, response.json()
    ids = [n["id"] for n in response.json()["notifications"]]
    job = AcceptJob.objects.get()
    sends = AuditLog.objects.filter(action="notification.send", client_id=client_tenant.id)
    # At the 202 only the notification whose items span two slices has its row.
    assert [str(r.notification_id) for r in sends] == [ids[5]]

    first = accept_job_expand(job_id=job.id, cursor=0)
    assert first.expanded
    assert not accept_job_expand(job_id=job.id, cursor=0).expanded  # the slice, run twice
    expand_all(job.id)

    rows = list(sends.all())
    assert Counter(str(r.notification_id) for r in rows) == Counter(ids)  # one each, no twice
    by_id = {str(r.notification_id): r for r in rows}
    row = by_id[ids[3]]
    accept_row = by_id[ids[5]]
    assert (row.actor_type, row.actor_id, row.actor_display, row.ip, row.user_agent,
            row.request_id) == (accept_row.actor_type, accept_row.actor_id,
                                accept_row.actor_display, accept_row.ip,
                                accept_row.user_agent, accept_row.request_id)
    assert (row.actor_type, row.user_agent) == ("api_key", "bulk-client/1.0")
    assert row.actor_id and row.ip
    assert row.created_at == job.accepted_at
    assert row.recipient_external_id == "b3"
    assert row.changes == {
        "template": "welcome", "version": 1, "channels": ["email"], "priority": "normal",
        "category": row.changes["category"], "recipient_count": 1, "recipients": ["b3"],
        "variables": ["name"], "metadata": ["batch"], "scheduled_at": None,
        "idempotency_key": None,
    }
    assert accept_row.changes["recipient_count"] == 30
    assert accept_row.changes["recipients"] == [f"m{i}" for i in range(30)]


@pytest.mark.django_db(transaction=True)
def test_two_tasks_expanding_a_bulk_job_at_once_write_each_send_row_once(
    client_tenant: Any, email_template: Any,
) -> None:
    api = api_with_key(api_key_for(client_tenant))
    response = api.post(BULK, {"notifications": bulk_items(150)}, format="json")
    assert response.status_code == 202
    ids = [n["id"] for n in response.json()["notifications"]]
    job_id = AcceptJob.objects.get().id

    results = concurrently(3, lambda i: expand_all(job_id))

    assert not [r for r in results if isinstance(r, Exception)], results
    sends = AuditLog.objects.filter(action="notification.send", client_id=client_tenant.id)
    assert Counter(str(n) for n in sends.values_list("notification_id", flat=True)) == Counter(ids)


@pytest.mark.django_db
def test_a_bulk_item_cancelled_or_deleted_before_its_slice_still_has_its_send_row(
    api: APIClient, client_tenant: Any, email_template: Any,
) -> None:
    response = api.post(BULK, {"notifications": bulk_items(150)}, format="json")
    ids = [n["id"] for n in response.json()["notifications"]]
    job_id = AcceptJob.objects.get().id
    assert api.put(f"{SEND}/{ids[100]}/cancel").status_code == 200
    assert api.delete(f"{SEND}/{ids[120]}").status_code == 204

    expand_all(job_id)

    sends = AuditLog.objects.filter(action="notification.send", client_id=client_tenant.id)
    assert sends.count() == 150
    cancelled = sends.get(notification_id=ids[100])
    assert (cancelled.changes["template"], cancelled.changes["recipients"],
            cancelled.changes["variables"]) == ("welcome", ["b100"], ["name"])
    deleted = sends.get(notification_id=ids[120])
    assert (deleted.changes["template"], deleted.changes["recipients"],
            deleted.changes["deleted_before_expansion"]) == ("welcome", ["b120"], True)
    assert deleted.actor_type == "api_key"
    assert not Delivery.objects.filter(notification_id__in=[ids[100], ids[120]]).exists()


@pytest.mark.django_db
def test_a_job_accepted_before_slices_wrote_send_rows_still_expands(
    api: APIClient, client_tenant: Any, email_template: Any,
) -> None:
    """A slice payload of the earlier shape (a bare list of items: the accept wrote every
    send row) expands as before and writes no send row."""
    from apps.core.crypto import decrypt, encrypt

    response = api.post(BULK, {"notifications": bulk_items(150)}, format="json")
    job_id = AcceptJob.objects.get().id
    for piece in AcceptJobSlice.objects.filter(job_id=job_id):
        piece.payload = encrypt(json.dumps(json.loads(decrypt(piece.payload))["items"]))
        piece.save(update_fields=["payload"])

    expand_all(job_id)

    assert Delivery.objects.count() == 150 == len(response.json()["notifications"])
    assert not AuditLog.objects.filter(action="notification.send").exists()
