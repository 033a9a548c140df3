"""Writes for templates. Versions are appended, never edited; publishing or rolling back moves
the per-locale pointer (TemplateActiveVersion) and appends a TemplatePublication, in the same
transaction. `Template.active_version` always mirrors the default locale's pointer.

Every write a send would read (a template's settings, a pointer, a delete) calls
`client_config_changed`: web processes keep a copy of what a send reads, valid until the
client's configuration generation changes (apps/clients/config_generation.py). A write that
bypasses these services is seen by sends within that copy's TTL (60 s)."""

from __future__ import annotations

import json
from typing import Any, TypedDict

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.db.models.deletion import ProtectedError
from django.utils import timezone

from apps.audit.services import audit_record, audit_snapshot, audit_update
from apps.clients.config_generation import client_config_changed
from apps.clients.models import Client
from apps.core.exceptions import ApplicationError, Conflict

from .locales import is_valid_locale, locale_key, normalize_locale
from .models import (
    PublicationAction,
    Template,
    TemplateActiveVersion,
    TemplatePublication,
    TemplateVersion,
)
from .rendering import (
    CHANNELS,
    RenderError,
    UnsafeTemplateError,
    is_safe_action_url,
    required_variables,
    source_parts,
)
from .selectors import (
    default_locale_version,
    template_is_used,
    template_version_get,
)


class VersionContent(TypedDict, total=False):
    """A version's content fields (all optional; at least one must be non-empty)."""

    subject: str
    text_body: str
    html_body: str
    sms_body: str
    whatsapp_body: str
    whatsapp_content_sid: str
    push_title: str
    push_body: str
    push_data: dict[str, str]
    in_app_title: str
    in_app_body: str
    in_app_action_url: str
    in_app_data: dict[str, Any]


CONTENT_FIELDS: tuple[str, ...] = tuple(VersionContent.__annotations__)


def _checked_locale(value: str, field: str) -> str:
    if not is_valid_locale(value):
        raise ApplicationError(f"Invalid locale '{value}'.", code="invalid_locale",
                               fields={field: ["Use a language tag such as en, fr or fr-CA."]})
    return normalize_locale(value)


def _checked_channels(channels: list[str]) -> list[str]:
    unknown = [c for c in channels if c not in CHANNELS]
    if not channels or unknown:
        raise ApplicationError(
            "Unknown or no channels.", code="invalid_channels",
            fields={"channels": [f"Use one or more of: {', '.join(CHANNELS)}."]},
        )
    return list(dict.fromkeys(channels))


IN_APP_TITLE_MAX = 500
IN_APP_ACTION_URL_MAX = 2000
IN_APP_DATA_MAX_BYTES = 4096


def _checked_in_app(title: str, action_url: str, data: Any) -> dict[str, Any]:
    """In-app content that could never be stored or shown is refused here (422 naming the
    field): a title over 500 characters, an action URL that is not http(s) or a path, data
    that is not a small JSON object."""
    errors: dict[str, list[str]] = {}
    if len(title) > IN_APP_TITLE_MAX:
        errors["in_app_title"] = [f"At most {IN_APP_TITLE_MAX} characters."]
    if len(action_url) > IN_APP_ACTION_URL_MAX:
        errors["in_app_action_url"] = [f"At most {IN_APP_ACTION_URL_MAX} characters."]
    elif action_url and not is_safe_action_url(action_url, template=True):
        errors["in_app_action_url"] = ["An http(s) URL or a path starting with /, e.g. "
                                       "https://app.example.com/orders/{{ orderId }}."]
    data = data if data is not None else {}
    if not isinstance(data, dict):
        errors["in_app_data"] = ["A JSON object."]
    elif len(json.dumps(data, default=str)) > IN_APP_DATA_MAX_BYTES:
        errors["in_app_data"] = [f"At most {IN_APP_DATA_MAX_BYTES} bytes of JSON."]
    if errors:
        raise ApplicationError("Invalid in-app content.", code="invalid_in_app_content",
                               fields=errors)
    return {str(k): v for k, v in data.items()}


@transaction.atomic
def template_create(
    *,
    client: Client,
    key: str,
    name: str,
    channels: list[str],
    category: str = "transactional",
    default_locale: str = "en",
    sample_variables: dict[str, Any] | None = None,
    content: VersionContent | None = None,
    publish: bool = True,
    actor: str = "",
) -> Template:
    """Creates a template; with `content`, also its first version in the default locale
    (published unless `publish=False`). 409 `template_key_taken` if the key is in use."""
    default_locale = _checked_locale(default_locale, "default_locale")
    channels = _checked_channels(channels)
    try:
        with transaction.atomic():
            template = Template.objects.create(
                client=client, key=key, name=name, channels=channels, category=category,
                default_locale=default_locale, sample_variables=sample_variables or {},
            )
    except IntegrityError as exc:
        raise Conflict(f"A template with key '{key}' exists.", code="template_key_taken",
                       fields={"key": ["Already used by another of your templates."]}) from exc
    client_config_changed(client_id=client.pk)
    audit_record(action="template.create", client=client, object_type="template", object_id=template.pk,
                 changes={"key": key, "name": name, "channels": channels, "category": category,
                          "default_locale": default_locale})
    if content is not None:
        template_version_create(template=template, **content, publish=publish, actor=actor)
        template.refresh_from_db(fields=["active_version"])
    return template


@transaction.atomic
def template_update(
    *,
    template: Template,
    name: str | None = None,
    channels: list[str] | None = None,
    category: str | None = None,
    default_locale: str | None = None,
    sample_variables: dict[str, Any] | None = None,
) -> Template:
    """Updates a template's settings (never its key or content; content changes are new
    versions). A new default locale must already be published, unless nothing is."""
    locked = Template.objects.select_for_update().get(pk=template.pk)
    before = audit_snapshot(locked, ("name", "channels", "category", "default_locale",
                                     "sample_variables", "active_version"), from_db=False)
    fields = ["updated_at"]
    if name is not None:
        locked.name = name
        fields.append("name")
    if channels is not None:
        locked.channels = _checked_channels(channels)
        fields.append("channels")
    if category is not None:
        locked.category = category
        fields.append("category")
    if sample_variables is not None:
        locked.sample_variables = sample_variables
        fields.append("sample_variables")
    if default_locale is not None and locale_key(default_locale) != locale_key(locked.default_locale):
        new_default = _checked_locale(default_locale, "default_locale")
        allowed, version = default_locale_version(template=locked, locale=new_default)
        if not allowed:
            raise ApplicationError(
                f"Locale '{new_default}' has no published version.", code="locale_not_published",
                fields={"default_locale": ["Publish a version in this locale first."]},
            )
        locked.default_locale = new_default
        locked.active_version = version
        fields += ["default_locale", "active_version"]
    locked.save(update_fields=fields)
    client_config_changed(client_id=locked.client_id)
    audit_update(action="template.update", before=before, after=locked, client=locked.client_id,
                 object_type="template", extra={"key": locked.key})
    return locked


@transaction.atomic
def template_delete(*, template: Template) -> None:
    """Deletes a template and its versions; 409 `template_in_use` if any notification used it
    (notifications keep the exact version they rendered, so those versions must stay)."""
    locked = Template.objects.select_for_update().get(pk=template.pk)
    in_use = Conflict(
        f"Template '{locked.key}' is used by notifications and cannot be deleted.",
        code="template_in_use",
    )
    if template_is_used(template=locked):
        raise in_use
    try:
        with transaction.atomic():
            Template.objects.filter(pk=locked.pk).update(active_version=None)
            TemplateActiveVersion.objects.filter(template=locked).delete()
            Template.objects.filter(pk=locked.pk).delete()
            # Foreign keys are deferred: check now, so a notification committed since the
            # check above is a 409 and not an error at commit.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    except (IntegrityError, ProtectedError) as exc:
        raise in_use from exc
    client_config_changed(client_id=locked.client_id)
    audit_record(action="template.delete", client=locked.client_id, object_type="template",
                 object_id=locked.pk, changes={"key": locked.key, "name": locked.name})


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
    in_app_title: str = "",
    in_app_body: str = "",
    in_app_action_url: str = "",
    in_app_data: dict[str, Any] | None = None,
    locale: str | None = None,
    publish: bool = True,
    actor: str = "",
) -> TemplateVersion:
    """Appends a version for `locale` (default: the template's default locale), numbered after
    that locale's highest. Published at once unless `publish=False` (a draft).

    422 `template_syntax_error` naming the part (`fields`: {"html_body": [...]}) for a source
    that does not compile, 422 `template_unsafe` for one the sandbox would refuse whatever the
    variables (`{{ x.__class__ }}`, `{{ d.update() }}`); 422 `template_empty` for a version
    without any content."""
    push_data = {str(k): str(v) for k, v in (push_data or {}).items()}
    in_app_data = _checked_in_app(in_app_title, in_app_action_url, in_app_data)
    locale = _checked_locale(locale or template.default_locale, "locale")
    try:
        required = required_variables(source_parts(
            subject=subject, text_body=text_body, html_body=html_body, sms_body=sms_body,
            whatsapp_body=whatsapp_body, push_title=push_title, push_body=push_body,
            push_data=push_data, in_app_title=in_app_title, in_app_body=in_app_body,
            in_app_action_url=in_app_action_url, in_app_data=in_app_data,
        ))
    except RenderError as exc:
        code = "template_unsafe" if isinstance(exc, UnsafeTemplateError) else "template_syntax_error"
        raise ApplicationError(str(exc), code=code,
                               fields={exc.part: [str(exc)]} if exc.part else {}) from exc
    if not any((subject, text_body, html_body, sms_body, whatsapp_body, whatsapp_content_sid,
                push_title, push_body, push_data, in_app_title, in_app_body, in_app_data)):
        raise ApplicationError("A version needs content for at least one channel.",
                               code="template_empty")
    Template.objects.select_for_update().filter(pk=template.pk).first()
    versions = TemplateVersion.objects.filter(template=template, locale=locale)
    number = (versions.aggregate(n=Max("version"))["n"] or 0) + 1
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
        in_app_title=in_app_title,
        in_app_body=in_app_body,
        in_app_action_url=in_app_action_url,
        in_app_data=in_app_data,
        required_variables=required,
    )
    audit_record(action="template.version.create", client=template.client_id,
                 object_type="template_version", object_id=version.pk,
                 changes={"template": template.key, "locale": locale, "version": number,
                          "required_variables": required, "publish": publish})
    if publish:
        template_version_publish(version=version, actor=actor)
        if locale_key(locale) == locale_key(template.default_locale):
            template.active_version = version
    return version


def _make_active(*, version: TemplateVersion, actor: str, rollback: bool) -> TemplateActiveVersion:
    template = Template.objects.select_for_update().get(pk=version.template_id)
    now = timezone.now()
    pointer = (
        TemplateActiveVersion.objects.select_for_update().select_related("version")
        .filter(template=template, locale=version.locale).first()
    )
    if pointer is not None and pointer.version_id == version.pk:
        return pointer  # already live: nothing to record
    previous = pointer.version if pointer is not None else None
    if rollback and (previous is None or version.version >= previous.version):
        raise ApplicationError(
            f"Version {version.version} is not older than the active version of '{version.locale}'.",
            code="not_a_rollback", fields={"version": ["Roll back to an older version."]},
        )
    if pointer is None:
        pointer = TemplateActiveVersion.objects.create(
            template=template, locale=version.locale, version=version, published_at=now,
            published_by=actor,
        )
    else:
        pointer.version, pointer.published_at, pointer.published_by = version, now, actor
        pointer.save(update_fields=["version", "published_at", "published_by"])
    action = (PublicationAction.ROLLBACK if previous is not None and version.version < previous.version
              else PublicationAction.PUBLISH)
    TemplatePublication.objects.create(template=template, locale=version.locale, version=version,
                                       previous_version=previous, action=action, actor=actor)
    client_config_changed(client_id=template.client_id)
    audit_record(action=f"template.version.{action.value}", client=template.client_id,
                 object_type="template_version", object_id=version.pk,
                 changes={"template": template.key, "locale": version.locale, "version": version.version,
                          "previous_version": previous.version if previous is not None else None})
    if locale_key(version.locale) == locale_key(template.default_locale):
        Template.objects.filter(pk=template.pk).update(active_version=version, updated_at=now)
    return pointer


@transaction.atomic
def template_version_publish(*, version: TemplateVersion, actor: str) -> TemplateActiveVersion:
    """Makes `version` the live one for its locale (a draft, or an older version: that is
    recorded as a rollback). Idempotent: publishing the live version records nothing."""
    return _make_active(version=version, actor=actor, rollback=False)


@transaction.atomic
def template_rollback(
    *, template: Template, locale: str, to_version: TemplateVersion | int, actor: str
) -> TemplateActiveVersion:
    """Re-publishes an older version of `locale` (a version object or its number). 404 if the
    locale has no such version, 422 `not_a_rollback` if it is not older than the live one."""
    if isinstance(to_version, int):
        to_version = template_version_get(template=template, number=to_version, locale=locale)
    elif to_version.template_id != template.pk or locale_key(to_version.locale) != locale_key(locale):
        raise ApplicationError("The version belongs to another template or locale.",
                               code="version_mismatch")
    return _make_active(version=to_version, actor=actor, rollback=True)
