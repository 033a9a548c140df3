"""Admin building blocks shared by the apps."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from .crypto import pii_hash


class ReadOnlyAdminMixin:
    """History must not change from the admin: view only, no add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False
    show_change_link = True


class HashedSearchMixin:
    """Exact-address search over encrypted fields: the search term's keyed hash is matched
    against `hashed_search_fields` (hash columns, `recipient__email_hash` …), ORed with the
    ordinary `search_fields`. A part of an address finds nothing: the column is ciphertext."""

    hashed_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        base = queryset
        queryset, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term)
        term = search_term.strip()
        if term and self.hashed_search_fields:
            digest = pii_hash(term)
            match = Q()
            for name in self.hashed_search_fields:
                match |= Q(**{name: digest})
            queryset = queryset | base.filter(match)
        return queryset, may_have_duplicates
