"""Recurring sends over the API: each one owns a django-celery-beat PeriodicTask and
CrontabSchedule (with its time zone) that follow every change; bad input answers 400/422."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from rest_framework.test import APIClient

from apps.notifications.models import Notification
from apps.scheduling.models import RecurringSend
from apps.segments.models import Segment
from tests.factories import ClientFactory, RecipientFactory, TemplateFactory, api_key_for

pytestmark = pytest.mark.django_db

BODY = {"name": "Weekday digest", "template_id": "welcome", "variables": {"name": "x"},
        "recipient_ids": ["ada"], "minute": "0", "hour": "9", "day_of_week": "mon-fri",
        "timezone": "Europe/Paris"}


@pytest.fixture(autouse=True)
def ada(client_tenant: Any, email_template: Any) -> Any:
    return RecipientFactory(client=client_tenant, external_id="ada")


def test_create_update_delete_keep_the_beat_task_in_step(api: APIClient) -> None:
    response = api.post("/api/v1/schedules", BODY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["template"]["key"] == "welcome" and body["recipient_ids"] == ["ada"]
    assert body["next_run_at"] is not None and body["enabled"] is True

    recurring_send = RecurringSend.objects.get(id=body["id"])
    task = PeriodicTask.objects.get(id=recurring_send.periodic_task_id)
    assert task.task == "scheduling.recurring_send_task"
    assert json.loads(task.kwargs) == {"recurring_send_id": body["id"]}
    assert task.queue == "maintenance" and task.enabled
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, crontab.day_of_month,
            crontab.month_of_year) == ("0", "9", "mon-fri", "*", "*")
    assert str(crontab.timezone) == "Europe/Paris"

    changed = api.put(f"/api/v1/schedules/{body['id']}",
                      {"hour": "18", "timezone": "America/New_York", "enabled": False},
                      format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["day_of_week"] == "mon-fri"  # kept
    assert changed.json()["next_run_at"] is None  # paused
    task.refresh_from_db()
    crontab.refresh_from_db()
    assert (crontab.hour, str(crontab.timezone)) == ("18", "America/New_York")
    assert not task.enabled
    assert PeriodicTask.objects.filter(name__startswith="recurring-send:").count() == 1

    assert api.delete(f"/api/v1/schedules/{body['id']}").status_code == 204
    assert not RecurringSend.objects.exists()
    assert not PeriodicTask.objects.filter(id=task.id).exists()
    assert not CrontabSchedule.objects.filter(id=crontab.id).exists()


def test_a_schedule_can_target_a_segment_by_key(api: APIClient, pro_segment: Segment) -> None:
    response = api.post("/api/v1/schedules", {**{k: v for k, v in BODY.items()
                                                 if k != "recipient_ids"}, "segment": "pro"},
                        format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["segment"] == {"id": str(pro_segment.id), "key": "pro"}
    retarget = api.put(f"/api/v1/schedules/{response.json()['id']}", {"recipient_ids": ["ada"]},
                       format="json")
    assert retarget.json()["segment"] is None and retarget.json()["recipient_ids"] == ["ada"]


@pytest.mark.parametrize(("change", "field"), [
    ({"minute": "99"}, "minute"),
    ({"hour": "every"}, "hour"),
    ({"day_of_week": "funday"}, "day_of_week"),
    ({"day_of_month": "30", "month_of_year": "2"}, "day_of_month"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"recipient_ids": []}, "recipient_ids"),
    ({"segment": "pro"}, "segment"),  # and recipient_ids: not both
    ({"channels": ["fax"]}, "channels[0]"),
])
def test_invalid_schedules_answer_400_with_the_field(
    api: APIClient, pro_segment: Segment, change: dict[str, Any], field: str
) -> None:
    response = api.post("/api/v1/schedules", {**BODY, **change}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not PeriodicTask.objects.filter(name__startswith="recurring-send:").exists()


def test_invalid_update_leaves_the_schedule_and_its_task_unchanged(api: APIClient) -> None:
    schedule_id = api.post("/api/v1/schedules", BODY, format="json").json()["id"]
    response = api.put(f"/api/v1/schedules/{schedule_id}", {"minute": "*/0"}, format="json")
    assert response.status_code == 400
    assert "minute" in response.json()["error"]["fields"]
    assert PeriodicTask.objects.get(name=f"recurring-send:{schedule_id}").crontab.minute == "0"


def test_domain_problems_answer_422(api: APIClient, client_tenant: Any) -> None:
    unknown_template = api.post("/api/v1/schedules", {**BODY, "template_id": "nope"}, format="json")
    assert unknown_template.status_code == 422
    assert unknown_template.json()["error"]["code"] == "unknown_template"
    missing = api.post("/api/v1/schedules", {**BODY, "variables": {}}, format="json")
    assert missing.status_code == 422
    assert "variables.name" in missing.json()["error"]["fields"]
    their_segment = Segment.objects.create(client=ClientFactory(), name="t", key="theirs",
                                           definition={"all": []})
    body = {k: v for k, v in BODY.items() if k != "recipient_ids"}
    unknown_segment = api.post("/api/v1/schedules", {**body, "segment": str(their_segment.id)},
                               format="json")
    assert unknown_segment.status_code == 422
    assert unknown_segment.json()["error"]["code"] == "unknown_segment"


def test_another_clients_schedule_is_not_found(api: APIClient) -> None:
    other = ClientFactory()
    TemplateFactory(client=other, key="welcome")
    RecipientFactory(client=other, external_id="ada")
    other_api = APIClient()
    other_api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(other)}")
    theirs = other_api.post("/api/v1/schedules", BODY, format="json").json()["id"]

    assert api.get(f"/api/v1/schedules/{theirs}").status_code == 404
    assert api.put(f"/api/v1/schedules/{theirs}", {"hour": "1"}, format="json").status_code == 404
    assert api.post(f"/api/v1/schedules/{theirs}/run").status_code == 404
    assert api.delete(f"/api/v1/schedules/{theirs}").status_code == 404
    assert api.get("/api/v1/schedules/not-a-uuid").status_code == 404
    assert api.get("/api/v1/schedules").json()["results"] == []
    assert RecurringSend.objects.filter(id=theirs).exists()


def test_run_now_sends_at_once_even_when_paused(api: APIClient) -> None:
    schedule_id = api.post("/api/v1/schedules", {**BODY, "enabled": False},
                           format="json").json()["id"]
    response = api.post(f"/api/v1/schedules/{schedule_id}/run", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 202, response.json()
    assert response.json()["recipients"] == 1
    [notification_id] = response.json()["notifications"]
    notification = Notification.objects.get(id=notification_id)
    assert notification.metadata == {"recurring_send": schedule_id, "chunk": 0}

    again = api.post(f"/api/v1/schedules/{schedule_id}/run", HTTP_IDEMPOTENCY_KEY="k1")
    assert again.json()["notifications"] == [notification_id]
    assert api.post(f"/api/v1/schedules/{schedule_id}/run").status_code == 202
    assert Notification.objects.count() == 2
    detail = api.get(f"/api/v1/schedules/{schedule_id}").json()
    assert detail["last_run_at"] is not None and len(detail["last_notification_ids"]) == 1


def test_run_now_reports_a_refused_send_as_422(api: APIClient) -> None:
    schedule_id = api.post("/api/v1/schedules", BODY, format="json").json()["id"]
    RecurringSend.objects.filter(id=schedule_id).update(variables={})  # as if the template changed
    response = api.post(f"/api/v1/schedules/{schedule_id}/run")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "missing_variables"
    assert "missing_variables" in api.get(f"/api/v1/schedules/{schedule_id}").json()["last_error"]


def test_the_openapi_schema_documents_segments_and_schedules() -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    paths = set(schema["paths"])
    assert {"/api/v1/schedules", "/api/v1/schedules/{schedule_id}",
            "/api/v1/schedules/{schedule_id}/run", "/api/v1/segments",
            "/api/v1/segments/{segment_ref}", "/api/v1/segments/{segment_ref}/count",
            "/api/v1/segments/{segment_ref}/recipients",
            "/api/v1/segments/{segment_ref}/send"} <= paths


def test_a_local_send_time_is_set_shown_and_cleared_over_the_api(api: APIClient) -> None:
    created = api.post("/api/v1/schedules", {**BODY, "local_send_time": "09:30"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["local_send_time"] == "09:30:00"
    schedule_id = created.json()["id"]

    kept = api.put(f"/api/v1/schedules/{schedule_id}", {"name": "Renamed"}, format="json")
    assert kept.json()["local_send_time"] == "09:30:00"
    cleared = api.put(f"/api/v1/schedules/{schedule_id}", {"local_send_time": None}, format="json")
    assert cleared.json()["local_send_time"] is None
    bad = api.put(f"/api/v1/schedules/{schedule_id}", {"local_send_time": "25:00"}, format="json")
    assert bad.status_code == 400 and "local_send_time" in bad.json()["error"]["fields"]


def test_run_now_over_the_daily_quota_is_429_and_recorded(
    api: APIClient, client_tenant: Any, settings: Any
) -> None:
    settings.DAILY_DELIVERY_QUOTA_BY_CLIENT = {client_tenant.slug: 0}
    schedule_id = api.post("/api/v1/schedules", BODY, format="json").json()["id"]

    response = api.post(f"/api/v1/schedules/{schedule_id}/run")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert int(response["Retry-After"]) > 0
    assert not Notification.objects.exists()
    assert api.get(f"/api/v1/schedules/{schedule_id}").json()["last_error"].startswith(
        "quota_exceeded")
