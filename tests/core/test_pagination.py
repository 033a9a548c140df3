"""The shared list pagination (apps/core/pagination.py): bad `page_size` or `cursor` values are
400 `invalid` naming the parameter, on every paginated list (docs/api.md "Lists")."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.core.pagination import CursorPagination

pytestmark = pytest.mark.django_db

LISTS = ("/api/v1/templates", "/api/v1/templates/welcome/versions", "/api/v1/segments",
         "/api/v1/schedules", "/api/v1/webhooks", "/api/v1/audit/logs", "/api/v1/notifications")


def _views(patterns: list[Any]) -> list[Any]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            found.append(getattr(pattern.callback, "cls", None))
    return [view for view in found if view is not None]


def test_every_paginated_view_uses_the_shared_pagination() -> None:
    paginated = [view for view in _views(get_resolver().url_patterns)
                 if getattr(view, "pagination_class", None) is not None
                 and hasattr(view, "paginate_queryset")]
    assert paginated
    for view in paginated:
        assert issubclass(view.pagination_class, CursorPagination), view


@pytest.mark.parametrize("page_size", ["abc", "-5", "0", "1.5", " 5", "٣", "0", "000"])
def test_an_invalid_page_size_is_400_on_page_size(api: APIClient, email_template: Any,
                                                  page_size: str) -> None:
    for url in LISTS:
        response = api.get(url, {"page_size": page_size})
        assert response.status_code == 400, url
        error = response.json()["error"]
        assert error["code"] == "invalid", url
        assert list(error["fields"]) == ["page_size"], url


@pytest.mark.parametrize("page_size", ["501", "0500000", "9" * 5000])
def test_a_page_size_above_the_maximum_is_capped(api: APIClient, email_template: Any,
                                                 page_size: str) -> None:
    response = api.get("/api/v1/templates", {"page_size": page_size})
    assert response.status_code == 200


@pytest.mark.parametrize("cursor", ["abc", "!!!", "é", "cD0yMDI2", "cD1ub3QtYS1kYXRl", "x" * 3000])
def test_a_cursor_not_handed_out_is_400_on_cursor(api: APIClient, email_template: Any,
                                                  cursor: str) -> None:
    for url in LISTS:
        response = api.get(url, {"cursor": cursor})
        assert response.status_code == 400, (url, response.content[:200])
        error = response.json()["error"]
        assert error["code"] == "invalid", url
        assert list(error["fields"]) == ["cursor"], url


def test_a_cursor_handed_out_still_pages(api: APIClient, client_tenant: Any) -> None:
    from tests.factories import TemplateFactory

    for index in range(3):
        TemplateFactory(client=client_tenant, key=f"t{index}")
    first = api.get("/api/v1/templates", {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    assert len(first["results"]) == 2 and len(second["results"]) == 1
