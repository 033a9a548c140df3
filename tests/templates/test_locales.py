"""Which version a recipient gets: per-locale active versions with fallback."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.templates.locales import locale_chain, locale_key, normalize_locale
from apps.templates.selectors import (
    active_versions_by_locale,
    pick_version,
    template_version_for_locale,
)
from apps.templates.services import template_version_create
from tests.factories import TemplateFactory


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("fr", "fr"), ("FR", "fr"), ("fr_ca", "fr-CA"), ("fr-CA", "fr-CA"), (" en-gb ", "en-GB"),
     ("zh_hant_tw", "zh-Hant-TW"), ("es-419", "es-419"), ("", "")],
)
def test_locales_are_stored_in_one_spelling(raw: str, normalized: str) -> None:
    assert normalize_locale(raw) == normalized


def test_locale_chain_goes_from_specific_to_general() -> None:
    assert locale_chain("zh_Hant_TW") == ("zh-hant-tw", "zh-hant", "zh")
    assert locale_chain("FR-ca") == ("fr-ca", "fr")
    assert locale_chain("") == ()


VERSIONS = {key: SimpleNamespace(name=key) for key in ("en", "fr", "fr-ca", "pt-br")}


@pytest.mark.parametrize(
    ("recipient_locale", "expected"),
    [
        ("fr-CA", "fr-ca"),  # exact
        ("fr_ca", "fr-ca"),  # underscore, case
        ("FR-BE", "fr"),  # region not published → language
        ("fr", "fr"),
        ("pt", "en"),  # only pt-BR is published: a parent does not match a child
        ("pt-PT", "en"),
        ("de", "en"),  # unknown → default
        ("", "en"),
        (None, "en"),
    ],
)
def test_pick_version_falls_back_region_then_language_then_default(
    recipient_locale: str | None, expected: str
) -> None:
    picked: Any = pick_version(VERSIONS, "en", recipient_locale)
    assert picked.name == expected


def test_pick_version_uses_the_default_locales_own_chain_and_may_find_nothing() -> None:
    picked: Any = pick_version(VERSIONS, "en-GB", "de")
    assert picked.name == "en"
    assert pick_version({"fr": VERSIONS["fr"]}, "en", "de") is None


@pytest.mark.django_db
def test_template_version_for_locale_returns_the_active_version_per_locale() -> None:
    template = TemplateFactory(version__subject="Hello")
    fr = template_version_create(template=template, locale="fr", subject="Bonjour")
    fr_ca = template_version_create(template=template, locale="fr_CA", subject="Allô")
    template_version_create(template=template, locale="de", subject="Hallo (draft)", publish=False)

    assert fr_ca.locale == "fr-CA"
    assert template_version_for_locale(template=template, locale="fr-ca") == fr_ca
    assert template_version_for_locale(template=template, locale="fr-BE") == fr
    assert template_version_for_locale(template=template, locale="de") == template.active_version
    assert template.active_version is not None and template.active_version.locale == "en"


@pytest.mark.django_db
def test_versions_are_numbered_per_locale() -> None:
    template = TemplateFactory()
    assert template_version_create(template=template, locale="fr", subject="a").version == 1
    assert template_version_create(template=template, locale="fr", subject="b").version == 2
    assert template_version_create(template=template, subject="c").version == 2  # en


@pytest.mark.django_db
def test_resolving_many_recipients_costs_one_query() -> None:
    template = TemplateFactory()
    for locale in ("fr", "de", "es", "pt-BR"):
        template_version_create(template=template, locale=locale, subject=locale)
    recipients = ["fr-CA", "de", "pt_br", "en", "ja"] * 2000

    with CaptureQueriesContext(connection) as ctx:
        versions = active_versions_by_locale(template=template)
        picked = [pick_version(versions, template.default_locale, r) for r in recipients]

    assert len(ctx.captured_queries) == 1
    assert [v.locale for v in picked[:5] if v] == ["fr", "de", "pt-BR", "en", "en"]
    assert set(versions) == {locale_key(x) for x in ("en", "fr", "de", "es", "pt-BR")}
