"""A send reads its template from the web process's copy, valid at the client's
configuration generation (apps/clients/config_generation.py): every template write through
the API is seen by the very next send, a flushed Redis never revives a stale copy, and without
a generation (no throttle) every send reads the database."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.clients.config_generation import client_generation_key
from apps.clients.limits_store import limits_redis
from apps.notifications.models import Notification
from apps.templates.models import Template, TemplateVersion
from apps.templates.services import template_version_create

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications"
TEMPLATES = "/api/v1/templates"


def send(api: APIClient, recipient: str, **extra: Any) -> Any:
    return api.post(SEND, {"recipients": [{"id": recipient, "email": f"{recipient}@example.com"}],
                           "template_id": "welcome", "variables": {"name": "A"}, **extra},
                    format="json")


def sent_version(response: Any) -> int:
    assert response.status_code == 202, response.json()
    return Notification.objects.select_related("template_version").get(
        id=response.json()["id"]).template_version.version


def template_reads(api: APIClient, recipient: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert send(api, recipient).status_code == 202
    return sum("templates_templateactiveversion" in q["sql"] for q in queries.captured_queries)


def test_the_second_send_reads_no_template(api: APIClient, email_template: Any) -> None:
    assert template_reads(api, "u1") == 1
    assert template_reads(api, "u2") == 0


def test_a_version_published_through_the_api_is_used_by_the_next_send(
    api: APIClient, email_template: Any
) -> None:
    assert sent_version(send(api, "u1")) == 1

    created = api.post(f"{TEMPLATES}/welcome/versions",
                       {"subject": "v2 {{ name }}", "text_body": "Hi v2"}, format="json")
    assert created.status_code == 201, created.json()
    assert sent_version(send(api, "u2")) == 2

    rolled_back = api.post(f"{TEMPLATES}/welcome/versions/1/publish")
    assert rolled_back.status_code == 200, rolled_back.json()
    assert sent_version(send(api, "u3")) == 1


def test_a_changed_template_setting_is_used_by_the_next_send(
    api: APIClient, email_template: Any
) -> None:
    assert send(api, "u1").status_code == 202
    assert api.put(f"{TEMPLATES}/welcome", {"channels": ["sms"]}, format="json").status_code == 200

    refused = send(api, "u2")  # u2 has no phone: the template's channels are now sms

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "recipient_missing_address"


def test_a_deleted_template_is_unknown_to_the_next_send(api: APIClient, email_template: Any) -> None:
    # A send refused after the template read (no address for sms): the template is read (and
    # kept) but never used, so it can still be deleted.
    assert send(api, "u1", channels=["sms"]).status_code == 422
    assert api.delete(f"{TEMPLATES}/welcome").status_code == 204

    refused = send(api, "u2")

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "unknown_template"


def test_a_flushed_generation_is_never_revived(api: APIClient, email_template: Any) -> None:
    """A write the services did not see (SQL by hand) is invisible while the generation
    stands; once Redis loses the generation (a flush, a restart), the next request gets a new
    one and reads the database."""
    assert sent_version(send(api, "u1")) == 1
    v2 = template_version_create(template=email_template, subject="v2", text_body="v2",
                                 publish=False)
    Template.objects.filter(id=email_template.id).update(active_version=v2)
    email_template.active_versions.update(version=v2)
    limits_redis().delete(client_generation_key(email_template.client_id))

    assert sent_version(send(api, "u2")) == 2


def test_without_a_throttle_every_send_reads_its_template(
    api: APIClient, email_template: Any, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"client": None}}
    assert template_reads(api, "u1") == 1
    assert template_reads(api, "u2") == 1


def test_tenants_never_share_a_copy(
    api: APIClient, other_api: APIClient, email_template: Any, other_tenant: Any
) -> None:
    """Both tenants have a template `welcome`: each send pins its own tenant's version."""
    mine = Notification.objects.get(id=send(api, "u1").json()["id"])
    theirs = Notification.objects.get(id=send(other_api, "u1").json()["id"])

    assert mine.template_version.template.client_id == email_template.client_id
    assert theirs.template_version.template.client_id == other_tenant.id
    assert TemplateVersion.objects.get(id=theirs.template_version_id).template.key == "welcome"
