"""The templates admin as a product team uses it: edit → draft, preview, diff, publish,
roll back; lists do not query per row."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.templates.models import Template, TemplatePublication, TemplateVersion
from apps.templates.services import template_version_create
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db

CONTENT = {"subject": "", "text_body": "", "html_body": "", "sms_body": "", "whatsapp_body": "",
           "whatsapp_content_sid": "", "push_title": "", "push_body": "", "push_data": "{}"}


def template_form(template: Template, **changes: Any) -> dict[str, Any]:
    """The template change form as the browser posts it, starting from the live content."""
    version = template.active_version
    data: dict[str, Any] = {
        "name": template.name, "channels": template.channels, "category": template.category,
        "default_locale": template.default_locale, "sample_variables": "{}", "content_locale": "",
        **CONTENT,
    }
    if version is not None:
        data.update({part: getattr(version, part) for part in CONTENT if part != "push_data"})
    data.update(changes)
    return data


def change_url(obj: Any) -> str:
    return f"/admin/templates/{obj._meta.model_name}/{obj.pk}/change/"


def test_editing_content_creates_a_new_draft_and_leaves_the_live_version_alone(admin_client: Any) -> None:
    template = TemplateFactory(version__subject="Hello {{ name }}")
    live = template.active_version

    response = admin_client.post(change_url(template), template_form(template, subject="Hi {{ name }}!"),
                                 follow=True)

    assert response.status_code == 200
    draft = TemplateVersion.objects.get(template=template, version=2)
    assert (draft.subject, draft.locale) == ("Hi {{ name }}!", "en")
    template.refresh_from_db()
    assert template.active_version == live
    assert live is not None and TemplateVersion.objects.get(pk=live.pk).subject == "Hello {{ name }}"
    assert "saved as draft" in response.content.decode()


def test_saving_without_content_changes_creates_no_version(admin_client: Any) -> None:
    template = TemplateFactory(version__text_body="Line one\nLine two\n")
    # Browsers post textareas with CRLF line endings.
    form = template_form(template, name="Renamed", text_body="Line one\r\nLine two\r\n")

    assert admin_client.post(change_url(template), form).status_code == 302

    template.refresh_from_db()
    assert template.name == "Renamed"
    assert template.versions.count() == 1


def test_content_for_another_locale_becomes_a_draft_of_that_locale(admin_client: Any) -> None:
    template = TemplateFactory()
    admin_client.post(change_url(template), template_form(template, content_locale="fr_ca",
                                                          subject="Bonjour", text_body="Salut"))
    draft = TemplateVersion.objects.get(template=template, locale="fr-CA")
    assert draft.version == 1
    assert not TemplatePublication.objects.filter(version=draft).exists()


def test_a_syntax_error_is_shown_on_its_field_and_nothing_is_saved(admin_client: Any) -> None:
    template = TemplateFactory()
    response = admin_client.post(change_url(template), template_form(template, html_body="<p>{{ x </p>"))
    assert response.status_code == 200
    assert "html_body" in response.context["adminform"].form.errors
    assert template.versions.count() == 1


def test_adding_a_template_with_content_saves_a_draft(admin_client: Any, client_tenant: Any) -> None:
    response = admin_client.post("/admin/templates/template/add/", {
        "client": str(client_tenant.pk), "key": "promo", "name": "Promo", "channels": ["sms"],
        "category": "marketing", "default_locale": "en", "sample_variables": '{"code": "X1"}',
        "content_locale": "", **CONTENT, "sms_body": "Code {{ code }}",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    template = Template.objects.get(key="promo")
    assert template.active_version is None
    assert template.versions.get().required_variables == ["code"]


def test_version_page_previews_every_channel_with_html_in_a_sandboxed_iframe(admin_client: Any) -> None:
    template = TemplateFactory(
        channels=["email", "sms", "push"], sample_variables={"name": 'Ada "<b>"'},
        version__subject="Hi {{ name }}", version__html_body='<p class="x">Hi {{ name }} &amp; co</p>',
        version__sms_body="SMS {{ code }}", version__push_title="Push",
        version__push_data={"url": "/o/{{ code }}"},
    )
    page = admin_client.get(change_url(template.active_version)).content.decode()

    [srcdoc] = re.findall(r'<iframe sandbox="" [^>]*srcdoc="([^"]*)"', page)
    # Attribute-escaped once; the browser unescapes it into exactly the rendered email.
    assert html.unescape(srcdoc) == '<p class="x">Hi Ada &#34;&lt;b&gt;&#34; &amp; co</p>'
    assert "<b>" not in srcdoc
    assert "SMS {code}" in page  # a placeholder for a variable without a sample
    assert "/o/{code}" in page
    for channel in ("<h3>email</h3>", "<h3>sms</h3>", "<h3>push</h3>"):
        assert channel in page


def test_version_page_shows_a_render_error_instead_of_failing(admin_client: Any) -> None:
    template = TemplateFactory(sample_variables={"order": "flat"}, version__text_body="{{ order.total }}")
    response = admin_client.get(change_url(template.active_version))
    assert response.status_code == 200
    assert "Could not render email.text" in response.content.decode()


def test_version_page_diffs_against_the_live_version_of_its_locale(admin_client: Any) -> None:
    template = TemplateFactory(version__subject="Hello {{ name }}", version__text_body="same")
    draft = template_version_create(template=template, subject="Howdy {{ name }}", text_body="same",
                                    publish=False)
    page = admin_client.get(change_url(draft)).content.decode()
    assert "<h4>subject</h4>" in page and "<h4>text_body</h4>" not in page
    assert "-Hello {{ name }}" in page and "+Howdy {{ name }}" in page
    live_page = admin_client.get(change_url(template.active_version)).content.decode()
    assert "This is the live version for en." in live_page


def test_publish_and_roll_back_buttons(admin_client: Any) -> None:
    template = TemplateFactory()
    first = template.active_version
    draft = template_version_create(template=template, subject="two", text_body="x", publish=False)

    page = admin_client.get(change_url(draft)).content.decode()
    assert f'action="/admin/templates/templateversion/{draft.pk}/publish/"' in page
    admin_client.post(f"/admin/templates/templateversion/{draft.pk}/publish/")
    template.refresh_from_db()
    assert template.active_version == draft

    assert first is not None
    page = admin_client.get(change_url(first)).content.decode()
    assert "Roll back to this version" in page
    admin_client.post(f"/admin/templates/templateversion/{first.pk}/rollback/")
    template.refresh_from_db()
    assert template.active_version == first
    actions = TemplatePublication.objects.filter(template=template).values_list("action", flat=True)
    assert list(actions[:2]) == ["rollback", "publish"]


def test_publish_and_roll_back_admin_actions(admin_client: Any) -> None:
    template = TemplateFactory()
    first = template.active_version
    second = template_version_create(template=template, subject="two", text_body="x", publish=False)
    url = "/admin/templates/templateversion/"

    admin_client.post(url, {"action": "publish_versions", "_selected_action": [str(second.pk)]})
    template.refresh_from_db()
    assert template.active_version == second

    assert first is not None
    admin_client.post(url, {"action": "rollback_versions", "_selected_action": [str(first.pk)]})
    template.refresh_from_db()
    assert template.active_version == first

    response = admin_client.post(url, {"action": "rollback_versions", "_selected_action": [str(second.pk)]},
                                 follow=True)
    assert "is not older than the active version" in response.content.decode()
    template.refresh_from_db()
    assert template.active_version == first


def test_publishing_needs_the_publish_permission(client: Any) -> None:
    template = TemplateFactory()
    draft = template_version_create(template=template, subject="two", text_body="x", publish=False)
    user = User.objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_templateversion", "add_templateversion", "view_template", "change_template"]))
    client.force_login(user)

    assert "/publish/" not in client.get(change_url(draft)).content.decode()
    assert client.post(f"/admin/templates/templateversion/{draft.pk}/publish/").status_code == 403
    template.refresh_from_db()
    assert template.active_version != draft


def test_version_lists_the_notifications_that_used_it(admin_client: Any, client_tenant: Any) -> None:
    from apps.notifications.services import notification_send

    template = TemplateFactory(client=client_tenant, key="welcome")
    for i in range(3):
        notification_send(client=client_tenant, template_id="welcome", variables={"name": "x"},
                          recipients=[{"id": f"r{i}", "email": f"r{i}@example.com"}])
    version = template.active_version
    assert version is not None
    page = admin_client.get(change_url(version)).content.decode()
    link = f"/admin/notifications/notification/?template_version__id__exact={version.pk}"
    assert f'<a href="{link}">3 notifications</a>' in page
    listing = admin_client.get(link)
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 3


def test_add_version_page_starts_from_a_version_and_saves_a_draft_by_default(admin_client: Any) -> None:
    template = TemplateFactory(version__subject="Original {{ name }}")
    version = template.active_version
    assert version is not None

    page = admin_client.get(f"/admin/templates/templateversion/add/?from={version.pk}").content.decode()
    assert 'value="Original {{ name }}"' in page
    assert re.search(r'<input type="radio" name="then" value="draft"[^>]*checked', page)

    response = admin_client.post("/admin/templates/templateversion/add/", {
        "template": str(template.pk), "locale": "en", "then": "draft", **CONTENT,
        "subject": "Edited {{ name }}", "text_body": "x",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    template.refresh_from_db()
    assert template.active_version == version
    assert template.versions.filter(subject="Edited {{ name }}").exists()


@pytest.mark.parametrize("url", ["/admin/templates/template/", "/admin/templates/templateversion/"])
def test_list_pages_do_not_query_per_row(admin_client: Any, client_tenant: Any, url: str) -> None:
    from apps.notifications.services import notification_send

    def grow(prefix: str, count: int) -> None:
        for i in range(count):
            template = TemplateFactory(client=client_tenant, key=f"{prefix}{i}")
            template_version_create(template=template, locale="fr", subject="fr")
            template_version_create(template=template, subject="draft", text_body="x", publish=False)
            notification_send(client=client_tenant, template_id=template.key, variables={"name": "x"},
                              recipients=[{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"}])

    grow("a", 2)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    grow("b", 15)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(url).status_code == 200
    assert len(many.captured_queries) <= len(few.captured_queries)


def test_version_list_filters_by_status(admin_client: Any) -> None:
    template = TemplateFactory()
    draft = template_version_create(template=template, subject="d", text_body="x", publish=False)
    response = admin_client.get("/admin/templates/templateversion/", {"status": "draft"})
    assert [v.pk for v in response.context["cl"].result_list] == [draft.pk]


def test_template_page_shows_live_versions_history_and_locale_links(admin_client: Any) -> None:
    template = TemplateFactory()
    template_version_create(template=template, locale="fr", subject="Bonjour", text_body="x")
    page = admin_client.get(change_url(template)).content.decode()
    assert '<a href="?locale=fr">fr</a>' in page
    assert "(default)" in page and "Publishing history" in page

    fr_page = admin_client.get(change_url(template) + "?locale=fr").content.decode()
    assert 'value="Bonjour"' in fr_page

    TemplateFactory()  # another template's versions are not listed
    all_versions = admin_client.get(f"/admin/templates/templateversion/?template__id__exact={template.pk}")
    assert all_versions.status_code == 200
    assert {v.template_id for v in all_versions.context["cl"].result_list} == {template.pk}


def test_in_app_content_is_edited_like_the_other_channels(admin_client: Any) -> None:
    template = TemplateFactory()
    form = template_form(template, in_app_title="Hi {{ name }}", in_app_body="In the app",
                         in_app_action_url="/orders/{{ id }}", in_app_data='{"k": "{{ id }}"}')

    admin_client.post(change_url(template), form)
    refused = admin_client.post(change_url(template), template_form(
        template, in_app_body="x", in_app_action_url="javascript:alert(1)"))

    draft = TemplateVersion.objects.get(template=template, version=2)
    assert (draft.in_app_title, draft.in_app_action_url) == ("Hi {{ name }}", "/orders/{{ id }}")
    assert draft.in_app_data == {"k": "{{ id }}"}
    assert "in_app_action_url" in refused.context["adminform"].form.errors
    assert template.versions.count() == 2
