"""/api/v1/preferences/{recipient}: read and change preferences, opt out/in, consent history."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.clients.models import ApiKey
from apps.preferences.models import ConsentRecord, PreferenceProfile

pytestmark = pytest.mark.django_db

SEED_BODY = {  # seed 000's example, as written there
    "channels": {
        "email": {"enabled": True, "frequency": "immediate"},
        "sms": {"enabled": True, "quiet_hours": "22:00-08:00"},
        "whatsapp": {"enabled": False},
    },
    "categories": {"marketing": False, "security": True, "updates": True},
}


def test_a_recipient_without_preferences_gets_the_defaults(api: APIClient, ada: Any) -> None:
    response = api.get("/api/v1/preferences/ada")
    assert response.status_code == 200
    body = response.json()
    assert body["recipient"] == "ada"
    assert body["timezone"] == "Europe/Paris"
    assert set(body["channels"]) == {"email", "sms", "whatsapp", "push", "in_app"}
    assert all(c == {"enabled": True, "frequency": "immediate", "quiet_hours": None}
               for c in body["channels"].values())
    assert body["categories"] == {}
    assert body["quiet_hours"] is None
    assert body["frequency_caps"] == {}
    assert body["critical_categories"] == ["otp", "security"]
    assert not PreferenceProfile.objects.exists()


def test_put_with_the_seed_body_is_read_back(api: APIClient, ada: Any) -> None:
    response = api.put("/api/v1/preferences/ada", SEED_BODY, format="json")
    assert response.status_code == 200, response.json()
    body = api.get("/api/v1/preferences/ada").json()
    assert body == response.json()
    assert body["channels"]["whatsapp"]["enabled"] is False
    assert body["channels"]["sms"] == {"enabled": True, "frequency": "immediate",
                                       "quiet_hours": "22:00-08:00"}
    assert body["categories"] == {"marketing": False, "security": True, "updates": True}


def test_put_with_quiet_hours_caps_and_object_categories(api: APIClient, ada: Any) -> None:
    response = api.put("/api/v1/preferences/ada", {
        "channels": {"sms": {"enabled": False}},
        "categories": {"marketing": {"enabled": False}},
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "America/New_York"},
        "frequency_caps": {"marketing": {"limit": 3, "period": "day"}},
    }, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["channels"]["sms"]["enabled"] is False
    assert body["categories"] == {"marketing": False}
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "America/New_York"}
    assert body["timezone"] == "America/New_York"
    assert body["frequency_caps"] == {"marketing": {"limit": 3, "period": "day"}}


def test_put_keeps_what_it_leaves_out_and_null_clears(api: APIClient, ada: Any) -> None:
    api.put("/api/v1/preferences/ada", {
        "channels": {"sms": {"enabled": False}},
        "categories": {"marketing": False},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "frequency_caps": {"updates": {"limit": 1, "period": "week"}},
    }, format="json")
    body = api.put("/api/v1/preferences/ada", {"categories": {"updates": False}}, format="json").json()
    assert body["channels"]["sms"]["enabled"] is False
    assert body["categories"] == {"marketing": False, "updates": False}
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": None}
    body = api.put("/api/v1/preferences/ada", {"quiet_hours": None,
                                               "frequency_caps": {"updates": None}},
                   format="json").json()
    assert body["quiet_hours"] is None
    assert body["frequency_caps"] == {}
    assert body["categories"] == {"marketing": False, "updates": False}


def test_every_change_is_recorded_as_consent_and_repeats_are_not(api: APIClient, ada: Any) -> None:
    api.put("/api/v1/preferences/ada", {"channels": {"sms": {"enabled": False}},
                                        "categories": {"marketing": False},
                                        "quiet_hours": {"start": "22:00", "end": "07:00"}},
            format="json")
    records = list(ConsentRecord.objects.filter(recipient=ada).order_by("id"))
    assert [(r.action, r.channel, r.category) for r in records] == [
        ("opt_out", "sms", ""), ("opt_out", "", "marketing"), ("update", "", "")]
    key = ApiKey.objects.get(client=ada.client)
    assert {r.source for r in records} == {"api"}
    assert {r.actor for r in records} == {f"api_key:{key.prefix}"}
    assert records[2].detail == {"field": "quiet_hours", "before": None,
                                 "after": {"start": "22:00", "end": "07:00", "timezone": None}}
    profile = PreferenceProfile.objects.get(recipient=ada)
    api.put("/api/v1/preferences/ada", {"channels": {"sms": {"enabled": False}}}, format="json")
    assert ConsentRecord.objects.filter(recipient=ada).count() == 3
    again = PreferenceProfile.objects.get(recipient=ada)
    assert (again.version, again.updated_at) == (profile.version, profile.updated_at)
    api.put("/api/v1/preferences/ada", {"channels": {"sms": {"enabled": True}}}, format="json")
    changed = PreferenceProfile.objects.get(recipient=ada)
    assert changed.version == profile.version + 1
    assert changed.updated_at > profile.updated_at


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channels": {"fax": {"enabled": False}}}, "channels.fax"),
        ({"channels": {"sms": {"enabled": "maybe"}}}, "channels.sms.enabled"),
        ({"channels": {"sms": {"quiet_hours": "25:00-07:00"}}}, "channels.sms.quiet_hours"),
        ({"channels": {"sms": {"quiet_hours": "07:00-07:00"}}}, "channels.sms.quiet_hours"),
        ({"channels": {"email": {"frequency": "daily"}}}, "channels.email.frequency"),
        ({"categories": {"Marketing!": False}}, "categories.Marketing!"),
        ({"categories": {"marketing": "no"}}, "categories.marketing"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22h", "end": "07:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}},
         "quiet_hours.timezone"),
        ({"frequency_caps": {"marketing": {"limit": 0, "period": "day"}}},
         "frequency_caps.marketing.limit"),
        ({"frequency_caps": {"marketing": {"limit": 3, "period": "month"}}},
         "frequency_caps.marketing.period"),
    ],
)
def test_put_rejects_bad_fields_naming_them(api: APIClient, ada: Any, body: dict[str, Any],
                                            field: str) -> None:
    response = api.put("/api/v1/preferences/ada", body, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert not ConsentRecord.objects.exists()


def test_critical_categories_cannot_be_opted_out_of_or_capped(api: APIClient, ada: Any) -> None:
    response = api.put("/api/v1/preferences/ada", {
        "categories": {"security": False},
        "frequency_caps": {"otp": {"limit": 1, "period": "day"}}}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "critical_category"
    assert set(error["fields"]) == {"categories.security", "frequency_caps.otp"}
    response = api.post("/api/v1/preferences/ada/opt-out", {"category": "security"}, format="json")
    assert response.status_code == 422
    assert not ConsentRecord.objects.exists()


def test_patch_a_channel(api: APIClient, ada: Any) -> None:
    response = api.patch("/api/v1/preferences/ada/channels/sms", {"enabled": False}, format="json")
    assert response.status_code == 200
    assert response.json()["channels"]["sms"]["enabled"] is False
    response = api.patch("/api/v1/preferences/ada/channels/email",
                         {"quiet_hours": "21:30-06:45"}, format="json")
    assert response.json()["channels"]["email"] == {"enabled": True, "frequency": "immediate",
                                                    "quiet_hours": "21:30-06:45"}
    assert response.json()["channels"]["sms"]["enabled"] is False
    record = ConsentRecord.objects.filter(recipient=ada).order_by("id").first()
    assert (record.action, record.channel) == ("opt_out", "sms")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [("channels/fax", {"enabled": False}, "channel"),
     ("channels/sms", {}, "enabled"),
     ("channels/sms", {"enabled": "sometimes"}, "enabled"),
     ("channels/sms", {"quiet_hours": "late"}, "quiet_hours")],
)
def test_patch_rejects_bad_input(api: APIClient, ada: Any, path: str, body: dict[str, Any],
                                 field: str) -> None:
    response = api.patch(f"/api/v1/preferences/ada/{path}", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_opt_out_and_back_in(api: APIClient, ada: Any) -> None:
    body = api.post("/api/v1/preferences/ada/opt-out", {"channel": "email", "category": "marketing"},
                    format="json").json()
    assert body["channels"]["email"]["enabled"] is False
    assert body["categories"] == {"marketing": False}
    body = api.post("/api/v1/preferences/ada/opt-in", {"category": "marketing"}, format="json").json()
    assert body["categories"] == {"marketing": True}
    assert body["channels"]["email"]["enabled"] is False
    actions = list(ConsentRecord.objects.filter(recipient=ada).order_by("id")
                   .values_list("action", "channel", "category"))
    assert actions == [("opt_out", "email", ""), ("opt_out", "", "marketing"),
                       ("opt_in", "", "marketing")]


@pytest.mark.parametrize(
    ("body", "fields"),
    [({}, {"channel", "category"}), ({"channel": "fax"}, {"channel"}),
     ({"category": "Bad Name"}, {"category"})],
)
def test_opt_out_needs_a_valid_channel_or_category(api: APIClient, ada: Any, body: dict[str, Any],
                                                   fields: set[str]) -> None:
    response = api.post("/api/v1/preferences/ada/opt-out", body, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == fields


def test_consent_history_is_paginated_newest_first_with_evidence(api: APIClient, ada: Any) -> None:
    for category in ("a", "b", "c"):
        api.post("/api/v1/preferences/ada/opt-out", {"category": category}, format="json",
                 HTTP_USER_AGENT="support-tool/1.0")
    page = api.get("/api/v1/preferences/ada/consent?page_size=2").json()
    assert [r["category"] for r in page["results"]] == ["c", "b"]
    first = page["results"][0]
    assert first["action"] == "opt_out"
    assert first["source"] == "api"
    assert first["ip"] == "127.0.0.1"
    assert first["user_agent"] == "support-tool/1.0"
    assert first["actor"].startswith("api_key:")
    following = api.get(page["next"]).json()
    assert [r["category"] for r in following["results"]] == ["a"]


def test_another_clients_recipient_is_404_and_untouched(
    api: APIClient, other_client_recipient: Any
) -> None:
    assert api.get("/api/v1/preferences/ada").status_code == 404
    assert api.put("/api/v1/preferences/ada", {"categories": {"marketing": False}},
                   format="json").status_code == 404
    assert api.patch("/api/v1/preferences/ada/channels/sms", {"enabled": False},
                     format="json").status_code == 404
    assert api.post("/api/v1/preferences/ada/opt-out", {"channel": "sms"},
                    format="json").status_code == 404
    assert api.get("/api/v1/preferences/ada/consent").status_code == 404
    response = api.get("/api/v1/preferences/nobody")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not PreferenceProfile.objects.exists()
    assert not ConsentRecord.objects.exists()


def test_an_api_key_is_required(ada: Any) -> None:
    response = APIClient().get("/api/v1/preferences/ada")
    assert response.status_code == 401
