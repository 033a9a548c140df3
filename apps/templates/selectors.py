"""Reads for templates: lookups scoped to a client, locale fallback, lists for the API/admin."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from apps.clients.models import Client
from apps.core.exceptions import ApplicationError, NotFound

from .locales import locale_chain, locale_key, normalize_locale
from .models import Template, TemplateActiveVersion, TemplatePublication, TemplateVersion
from .rendering import MissingVariablesError, RenderError, preview


def _ref_query(template_ref: str) -> Q:
    query = Q(key=template_ref)
    with contextlib.suppress(ValueError):
        query |= Q(id=uuid.UUID(str(template_ref)))
    return query


def template_get_for_send(*, client: Client, template_ref: str) -> Template:
    """A client's template by id or key, with its active version; 422 if unusable."""
    template = (
        Template.objects.select_related("active_version")
        .filter(_ref_query(template_ref), client=client).first()
    )
    if template is None:
        raise ApplicationError(
            f"Unknown template '{template_ref}'.",
            code="unknown_template",
            fields={"template_id": ["No template with this id or key."]},
        )
    if template.active_version is None:
        raise ApplicationError(
            f"Template '{template.key}' has no published version.",
            code="template_not_published",
            fields={"template_id": ["Publish a version first."]},
        )
    return template


# --- locales ---------------------------------------------------------------------------------

def active_versions_by_locale(*, template: Template) -> dict[str, TemplateVersion]:
    """Every published locale of a template → its active version, in one query. Keys are
    `locale_key()`s (lower case, `-`: `fr-ca`); pass the dict to `pick_version`."""
    pointers = TemplateActiveVersion.objects.filter(template=template).select_related("version")
    return {locale_key(p.locale): p.version for p in pointers}


def pick_version(
    versions_by_locale: Mapping[str, TemplateVersion], default_locale: str,
    recipient_locale: str | None,
) -> TemplateVersion | None:
    """The version a recipient gets, without a query: the most specific published match of the
    recipient's locale (`fr-CA` → `fr`), else the template's default locale (`en-GB` → `en`).
    Case and `_`/`-` do not matter. None if not even the default locale is published."""
    for chain in (locale_chain(recipient_locale or ""), locale_chain(default_locale or "")):
        for key in chain:
            version = versions_by_locale.get(key)
            if version is not None:
                return version
    return None


def template_version_for_locale(*, template: Template, locale: str | None) -> TemplateVersion | None:
    """The active version for one locale with fallback (see `pick_version`). One query; for
    many recipients call `active_versions_by_locale` once and `pick_version` per recipient."""
    return pick_version(active_versions_by_locale(template=template), template.default_locale, locale)


# --- API / admin reads ----------------------------------------------------------------------

def _with_active_locales(queryset: QuerySet[Template]) -> QuerySet[Template]:
    pointers = TemplateActiveVersion.objects.select_related("version").only(
        "id", "template_id", "locale", "published_at", "published_by", "version__id",
        "version__version", "version__locale",
    )
    return queryset.prefetch_related(Prefetch("active_versions", queryset=pointers))


def template_get(*, client: Client, template_ref: str) -> Template:
    """A client's template by UUID or key (with its active version per locale); 404 otherwise,
    also for another client's template."""
    template = _with_active_locales(
        Template.objects.filter(_ref_query(template_ref), client=client)
    ).first()
    if template is None:
        raise NotFound(f"No template '{template_ref}'.")
    return template


def template_list(
    *, client: Client, name: str | None = None, channel: str | None = None,
    category: str | None = None,
) -> QuerySet[Template]:
    """A client's templates; `name` matches key or name (case-insensitive, contains), `channel`
    keeps templates that include it."""
    queryset = Template.objects.filter(client=client)
    if name:
        queryset = queryset.filter(Q(key__icontains=name) | Q(name__icontains=name))
    if channel:
        queryset = queryset.filter(channels__contains=[channel])
    if category:
        queryset = queryset.filter(category=category)
    return _with_active_locales(queryset)


def with_version_status(queryset: QuerySet[TemplateVersion]) -> QuerySet[TemplateVersion]:
    """Annotates `is_active` (live for its locale) and `first_published_at` (None = a draft)."""
    first_publication = (
        TemplatePublication.objects.filter(version=OuterRef("pk")).order_by("id").values("created_at")[:1]
    )
    return queryset.annotate(
        is_active=Exists(TemplateActiveVersion.objects.filter(version=OuterRef("pk"))),
        first_published_at=Subquery(first_publication),
    )


def with_notification_count(queryset: QuerySet[TemplateVersion]) -> QuerySet[TemplateVersion]:
    """Annotates `notification_count`: a correlated count on the notification FK index, run
    only for the rows a page returns (no query per row)."""
    notification = apps.get_model("notifications", "Notification")
    counts = (
        notification.objects.filter(template_version=OuterRef("pk")).order_by()
        .values("template_version").annotate(n=Count("pk")).values("n")
    )
    return queryset.annotate(notification_count=Coalesce(Subquery(counts), 0))


def template_versions(*, template: Template, locale: str | None = None) -> QuerySet[TemplateVersion]:
    queryset = TemplateVersion.objects.filter(template=template)
    if locale:
        queryset = queryset.filter(locale=normalize_locale(locale))
    return with_version_status(queryset)


def template_version_get(*, template: Template, number: int, locale: str | None = None) -> TemplateVersion:
    """Version `number` of `locale` (default: the template's default locale); 404 if absent."""
    wanted = normalize_locale(locale or template.default_locale)
    version = template_versions(template=template).filter(locale=wanted, version=number).first()
    if version is None:
        raise NotFound(f"Template '{template.key}' has no version {number} for locale '{wanted}'.")
    return version


def template_is_used(*, template: Template) -> bool:
    """Any notification pinned one of the template's versions."""
    notification = apps.get_model("notifications", "Notification")
    return bool(notification.objects.filter(template_version__template=template).exists())


def template_preview(
    *, template: Template, variables: Mapping[str, Any], locale: str | None = None,
    number: int | None = None,
) -> tuple[TemplateVersion, dict[str, dict[str, Any]]]:
    """Renders a version for `variables` (merged over the template's sample variables): version
    `number` of `locale` when given (drafts included), else the active version a recipient with
    `locale` would get. 404 if there is none; 422 `missing_variables` / `render_error`."""
    if number is not None:
        version: TemplateVersion | None = template_version_get(
            template=template, number=number, locale=locale
        )
    else:
        version = template_version_for_locale(template=template, locale=locale)
        if version is None:
            raise NotFound(f"Template '{template.key}' has no published version to preview.")
    assert version is not None
    merged = {**(template.sample_variables or {}), **variables}
    try:
        return version, preview(version, merged, channels=template.channels)
    except MissingVariablesError as exc:
        raise ApplicationError(
            str(exc), code="missing_variables",
            fields={f"variables.{name}": ["Required by the template."] for name in exc.names},
        ) from exc
    except RenderError as exc:
        raise ApplicationError(str(exc), code="render_error",
                               fields={exc.part or "variables": [str(exc)]}) from exc


def default_locale_version(*, template: Template, locale: str) -> tuple[bool, TemplateVersion | None]:
    """Whether `locale` may become the template's default locale, and the version that would
    then be `active_version`: it must be published (with fallback: `en-GB` may use `en`),
    unless the template has no published locale at all."""
    active = active_versions_by_locale(template=template)
    version = pick_version(active, locale, None)
    return (version is not None or not active), version


def active_pointer(*, template: Template, locale: str) -> TemplateActiveVersion | None:
    """The live version of exactly `locale` (no fallback), with the version."""
    return (
        TemplateActiveVersion.objects.select_related("version")
        .filter(template=template, locale=normalize_locale(locale)).first()
    )


def latest_version(*, template: Template, locale: str) -> TemplateVersion | None:
    """The newest version of `locale`, draft or not (what an editor continues from)."""
    return (
        TemplateVersion.objects.filter(template=template, locale=normalize_locale(locale))
        .order_by("-version").first()
    )


def template_publications(*, template: Template, limit: int = 20) -> list[TemplatePublication]:
    return list(
        TemplatePublication.objects.filter(template=template)
        .select_related("version", "previous_version").order_by("-id")[:limit]
    )


# Template versions never change once written (models.TemplateVersion): the send paths keep
# the ones they read per process, so a send reads only which version is active.
_VERSIONS_KEPT = 512
_versions: OrderedDict[Any, TemplateVersion] = OrderedDict()
_versions_lock = threading.Lock()


def template_versions_cached(ids: Iterable[Any]) -> dict[Any, TemplateVersion]:
    """Versions by id, from this process's LRU of recently used versions; the missing ones in
    one query. The instances are shared: callers must not change them."""
    wanted = set(ids)
    with _versions_lock:
        missing = [i for i in wanted if i not in _versions]
    fetched = {v.id: v for v in TemplateVersion.objects.filter(id__in=missing)} if missing else {}
    found = {}
    with _versions_lock:
        _versions.update(fetched)
        for i in wanted:
            version = _versions.get(i)
            if version is not None:
                _versions.move_to_end(i)
                found[i] = version
        while len(_versions) > _VERSIONS_KEPT:
            _versions.popitem(last=False)
    return found
