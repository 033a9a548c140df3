"""Drafts, publishing and rollback: versions are never edited, the live pointer moves."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.exceptions import ApplicationError
from apps.templates.models import TemplateActiveVersion, TemplatePublication, TemplateVersion
from apps.templates.services import (
    template_create,
    template_delete,
    template_rollback,
    template_update,
    template_version_create,
    template_version_publish,
)
from tests.factories import ClientFactory, TemplateFactory

pytestmark = pytest.mark.django_db


def test_a_draft_is_not_live_until_published() -> None:
    template = TemplateFactory(version__subject="v1")
    live = template.active_version

    draft = template_version_create(template=template, subject="v2", publish=False)
    template.refresh_from_db()
    assert template.active_version == live

    pointer = template_version_publish(version=draft, actor="admin:ada")
    template.refresh_from_db()
    assert template.active_version == draft
    assert (pointer.locale, pointer.version, pointer.published_by) == ("en", draft, "admin:ada")
    publication = TemplatePublication.objects.filter(template=template).first()
    assert publication is not None
    assert (publication.action, publication.version, publication.previous_version,
            publication.actor) == ("publish", draft, live, "admin:ada")


def test_publishing_the_live_version_again_records_nothing() -> None:
    template = TemplateFactory()
    before = TemplatePublication.objects.count()
    assert template.active_version is not None
    template_version_publish(version=template.active_version, actor="x")
    assert TemplatePublication.objects.count() == before


def test_rollback_republishes_an_older_version_without_editing_any() -> None:
    template = TemplateFactory(version__subject="one")
    template_version_create(template=template, subject="two")
    three = template_version_create(template=template, subject="three")
    snapshot = list(TemplateVersion.objects.order_by("version").values_list("version", "subject"))

    template_rollback(template=template, locale="EN", to_version=1, actor="api_key:abc")

    template.refresh_from_db()
    assert template.active_version is not None and template.active_version.subject == "one"
    assert list(TemplateVersion.objects.order_by("version").values_list("version", "subject")) == snapshot
    last = TemplatePublication.objects.filter(template=template).first()
    assert last is not None and (last.action, last.previous_version) == ("rollback", three)


def test_rollback_refuses_a_version_that_is_not_older() -> None:
    template = TemplateFactory()
    draft = template_version_create(template=template, subject="new", publish=False)
    with pytest.raises(ApplicationError) as exc:
        template_rollback(template=template, locale="en", to_version=draft, actor="x")
    assert exc.value.code == "not_a_rollback"


def test_publishing_another_locale_leaves_the_default_alone() -> None:
    template = TemplateFactory()
    en = template.active_version
    fr = template_version_create(template=template, locale="fr", subject="Bonjour")
    template.refresh_from_db()
    assert template.active_version == en
    assert set(TemplateActiveVersion.objects.filter(template=template)
               .values_list("locale", "version")) == {("en", en.pk), ("fr", fr.pk)}  # type: ignore[union-attr]


def test_changing_the_default_locale_moves_active_version_and_needs_a_published_locale() -> None:
    template = TemplateFactory()
    with pytest.raises(ApplicationError) as exc:
        template_update(template=template, default_locale="de")
    assert exc.value.code == "locale_not_published"
    assert exc.value.fields == {"default_locale": ["Publish a version in this locale first."]}

    fr = template_version_create(template=template, locale="fr", subject="Bonjour")
    updated = template_update(template=template, default_locale="FR")
    assert (updated.default_locale, updated.active_version) == ("fr", fr)


def test_a_syntax_error_is_a_422_naming_the_part() -> None:
    template = TemplateFactory()
    with pytest.raises(ApplicationError) as exc:
        template_version_create(template=template, subject="ok", html_body="<p>{{ name }</p>")
    assert (exc.value.code, exc.value.status_code) == ("template_syntax_error", 422)
    assert list(exc.value.fields) == ["html_body"]


def test_an_empty_version_is_refused() -> None:
    template = TemplateFactory()
    with pytest.raises(ApplicationError) as exc:
        template_version_create(template=template)
    assert exc.value.code == "template_empty"


def test_a_template_created_with_a_draft_is_not_sendable_yet() -> None:
    template = template_create(client=ClientFactory(), key="later", name="Later", channels=["sms"],
                               content={"sms_body": "Hi"}, publish=False)
    assert template.active_version is None
    assert template.versions.count() == 1


def test_a_notification_keeps_its_version_after_a_rollback(client_tenant: Any, clean_sandbox: Any) -> None:
    from apps.notifications.dispatch import deliveries_dispatch
    from apps.notifications.services import notification_send

    template = TemplateFactory(client=client_tenant, key="rb", version__subject="One {{ name }}")
    template_version_create(template=template, subject="Two {{ name }}", text_body="x")
    notification = notification_send(client=client_tenant, template_id="rb",
                                     recipients=[{"id": "b", "email": "b@example.com"}],
                                     variables={"name": "Ada"}).notification
    template_rollback(template=template, locale="en", to_version=1, actor="x")

    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    [message] = clean_sandbox.messages(to="b@example.com")
    assert message["subject"] == "Two Ada"


def test_delete_refuses_a_template_notifications_used(client_tenant: Any) -> None:
    from apps.notifications.services import notification_send

    used = TemplateFactory(client=client_tenant, key="used")
    notification_send(client=client_tenant, template_id="used",
                      recipients=[{"id": "c", "email": "c@example.com"}], variables={"name": "x"})
    with pytest.raises(ApplicationError) as exc:
        template_delete(template=used)
    assert (exc.value.code, exc.value.status_code) == ("template_in_use", 409)

    unused = TemplateFactory(client=client_tenant, key="unused")
    template_version_create(template=unused, locale="fr", subject="x")
    template_delete(template=unused)
    assert not TemplateVersion.objects.filter(template_id=unused.pk).exists()
