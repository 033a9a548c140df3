"""Writes for templates: versions are appended, never edited."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from apps.clients.models import Client
from apps.core.exceptions import ApplicationError

from .models import Template, TemplateVersion
from .rendering import RenderError, template_variables


@transaction.atomic
def template_create(
    *, client: Client, key: str, name: str, channels: list[str], category: str = "transactional"
) -> Template:
    return Template.objects.create(
        client=client, key=key, name=name, channels=channels, category=category
    )


@transaction.atomic
def template_version_create(
    *,
    template: Template,
    subject: str = "",
    text_body: str = "",
    html_body: str = "",
    sms_body: str = "",
    whatsapp_body: str = "",
    whatsapp_content_sid: str = "",
    push_title: str = "",
    push_body: str = "",
    push_data: dict[str, str] | None = None,
    locale: str = "en",
    publish: bool = True,
) -> TemplateVersion:
    """Appends a version (numbered after the highest) and, by default, makes it active."""
    push_data = push_data or {}
    try:
        required = template_variables(
            subject, text_body, html_body, sms_body, whatsapp_body, push_title, push_body,
            *[str(v) for v in push_data.values()],
        )
    except RenderError as exc:
        raise ApplicationError(str(exc), code="template_syntax_error") from exc
    Template.objects.select_for_update().filter(pk=template.pk).first()
    number = (template.versions.aggregate(n=Max("version"))["n"] or 0) + 1
    version = TemplateVersion.objects.create(
        template=template,
        version=number,
        locale=locale,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        sms_body=sms_body,
        whatsapp_body=whatsapp_body,
        whatsapp_content_sid=whatsapp_content_sid,
        push_title=push_title,
        push_body=push_body,
        push_data=push_data,
        required_variables=required,
    )
    if publish:
        template.active_version = version
        template.save(update_fields=["active_version", "updated_at"])
    return version
