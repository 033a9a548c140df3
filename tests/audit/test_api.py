"""GET /api/v1/audit/logs: the client's own rows only, filtered by date, action, recipient and
notification, cursor-paginated; 400 for bad dates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditLog
from tests.factories import api_key_for

from .conftest import new_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit/logs"


def log(client: Any, when: datetime, action: str = "notification.send", **fields: Any) -> AuditLog:
    return AuditLog.objects.create(client=client, created_at=when, action=action,
                                   actor_type=fields.pop("actor_type", "api_key"), **fields)


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, d, hour, tzinfo=UTC)


@pytest.fixture
def history(client_tenant: Any) -> dict[str, AuditLog]:
    notification_id = uuid.uuid4()
    return {
        "send": log(client_tenant, day(1), recipient_external_id="ada", notification_id=notification_id,
                    actor_display="nh_abc", ip="10.0.0.1"),
        "cancel": log(client_tenant, day(2), "notification.cancel", recipient_external_id="ada",
                      notification_id=notification_id),
        "bob": log(client_tenant, day(3), recipient_external_id="bob"),
        "staff": log(client_tenant, day(4), "api_key.revoke", actor_type="user", actor_id="7",
                     actor_display="alice", ip="192.168.1.5", user_agent="Firefox"),
        "theirs": log(new_client(), day(2), recipient_external_id="ada",
                      notification_id=notification_id),
    }


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_a_client_sees_only_its_own_rows_newest_first(api: APIClient, history: dict[str, AuditLog]) -> None:
    response = api.get(URL, {"start": "2026-03-01", "end": "2026-03-31"})  # not the key's own row
    assert ids(response) == [history[k].id for k in ("staff", "bob", "cancel", "send")]
    first = response.json()["results"][-1]
    assert first["actor"] == {"type": "api_key", "display": "nh_abc"}
    assert first["recipient"] == "ada" and first["ip"] == "10.0.0.1"
    assert first["notification_id"] == str(history["send"].notification_id)


def test_another_clients_notification_is_not_found_by_its_id(
    api: APIClient, history: dict[str, AuditLog]
) -> None:
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(history['theirs'].client)}")
    notification_id = str(history["send"].notification_id)
    assert ids(other.get(URL, {"notification_id": notification_id})) == [history["theirs"].id]
    assert ids(api.get(URL, {"notification_id": notification_id})) == [
        history["cancel"].id, history["send"].id]


def test_filters_by_dates_action_and_recipient(api: APIClient, history: dict[str, AuditLog]) -> None:
    # A bare end date includes that whole day; start is inclusive.
    assert ids(api.get(URL, {"start": "2026-03-02", "end": "2026-03-03"})) == [
        history["bob"].id, history["cancel"].id]
    assert ids(api.get(URL, {"start": "2026-03-02T12:00:00Z", "end": "2026-03-03T12:00:00Z"})) == [
        history["cancel"].id]  # end is exclusive
    assert ids(api.get(URL, {"recipient": "ada"})) == [history["cancel"].id, history["send"].id]
    assert ids(api.get(URL, {"action": "notification.cancel"})) == [history["cancel"].id]
    assert ids(api.get(URL, {"recipient": "ada", "end": "2026-03-01"})) == [history["send"].id]


def test_staff_rows_do_not_show_who_or_from_where(api: APIClient, history: dict[str, AuditLog]) -> None:
    [row] = api.get(URL, {"action": "api_key.revoke"}).json()["results"]
    assert row["actor"] == {"type": "user", "display": "NotifyHub staff"}
    assert row["ip"] is None and row["user_agent"] == ""


@pytest.mark.parametrize("params", [
    {"start": "yesterday"}, {"end": "2026-13-01"}, {"start": "2026-02-30"},
    {"start": "2026-03-05", "end": "2026-03-01"}, {"notification_id": "not-a-uuid"},
])
def test_bad_filters_are_400(api: APIClient, history: dict[str, AuditLog], params: dict[str, str]) -> None:
    response = api.get(URL, params)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid" and set(body["fields"]) & {"start", "end", "notification_id"}


def test_cursor_pagination(api: APIClient, client_tenant: Any) -> None:
    made = [log(client_tenant, day(1, hour)).id for hour in range(5)]
    first = api.get(URL, {"page_size": 2, "start": "2026-03-01", "end": "2026-03-31"}).json()
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()
    seen = [r["id"] for page in (first, second, third) for r in page["results"]]
    assert seen == made[::-1] and third["next"] is None


def test_without_a_key_it_is_401() -> None:
    assert APIClient().get(URL).status_code == 401


def test_start_equal_to_end_is_an_empty_range_not_an_error(api: APIClient) -> None:
    response = api.get(URL, {"start": "2026-03-02T12:00:00Z", "end": "2026-03-02T12:00:00Z"})
    assert response.status_code == 200
    assert response.json()["results"] == []
