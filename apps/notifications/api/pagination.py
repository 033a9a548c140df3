"""A true keyset cursor for the notification list: (created_at, id), newest first.

DRF's CursorPagination positions on `created_at` alone and skips ties with an OFFSET, so a
page among thousands of notifications accepted in the same instant (one bulk request) costs
as much as the offset. Here the cursor holds the whole key and the query compares the row
`(created_at, id)`, an index condition on (client, created_at, id)-ordered indexes.
Same response shape (`next`, `previous`, `results`) and query parameters (`cursor`,
`page_size`) as the project's default pagination.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

from apps.core.pagination import CursorPagination

from ..selectors import NotificationList


def _encode(reverse: bool, created_at: datetime, ident: uuid.UUID) -> str:
    raw = f"{'r' if reverse else 'n'}|{created_at.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(value: str) -> tuple[bool, datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        direction, at, ident = raw.split("|")
        created_at = datetime.fromisoformat(at)
        if direction not in ("r", "n") or created_at.tzinfo is None:
            raise ValueError(direction)
        return direction == "r", created_at, uuid.UUID(ident)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise serializers.ValidationError(
            {"cursor": ["Not a cursor from this list: follow the `next`/`previous` links."]}
        ) from exc


class KeysetCursorPagination(CursorPagination):
    """For querysets of Notification (instances, or `values()` rows with `created_at` and
    `id`), or a selectors.NotificationList (its rows, read by statements built once)."""

    ordering = ("-created_at", "-id")

    def paginate_queryset(  # type: ignore[override]
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        self.request = request
        self.base_url = request.build_absolute_uri()
        page_size = self.get_page_size(request)
        if not page_size:
            return None
        self.page_size = page_size
        encoded = request.query_params.get(self.cursor_query_param)
        position = _decode(encoded) if encoded else None
        rows, more = self._fetch(queryset, position, page_size)
        reverse = bool(position and position[0])
        if reverse and not rows:  # before the first page: the first page
            rows, more = self._fetch(queryset, None, page_size)
            position, reverse = None, False
        self.page = rows
        self.has_next = more if not reverse else True
        self.has_previous = more if reverse else position is not None
        return rows

    def _fetch(self, queryset: QuerySet[Any] | NotificationList,
               position: tuple[bool, datetime, uuid.UUID] | None,
               page_size: int) -> tuple[list[Any], bool]:
        reverse = False
        if isinstance(queryset, NotificationList):  # rows from a statement built once
            reverse = bool(position and position[0])
            rows = queryset.page(after=position[1:] if position else None, reverse=reverse,
                                 limit=page_size + 1)
        else:
            rows = self._fetch_queryset(queryset, position, page_size)
            reverse = bool(position and position[0])
        more = len(rows) > page_size
        rows = rows[:page_size]
        if reverse:
            rows.reverse()
        return rows, more

    def _fetch_queryset(self, queryset: QuerySet[Any],
                        position: tuple[bool, datetime, uuid.UUID] | None,
                        page_size: int) -> list[Any]:
        reverse = False
        if position is not None:
            reverse, created_at, ident = position
            params = (created_at, ident)
            queryset = queryset.filter(RawSQL(
                '("notifications_notification"."created_at", "notifications_notification"."id")'
                " > (%s, %s)", params, output_field=BooleanField(),
            ) if reverse else RawSQL(
                '("notifications_notification"."created_at", "notifications_notification"."id")'
                " < (%s, %s)", params, output_field=BooleanField(),
            ))
        order = ("created_at", "id") if reverse else ("-created_at", "-id")
        return list(queryset.order_by(*order)[: page_size + 1])

    def _link(self, reverse: bool, row: Any) -> str:
        url = remove_query_param(str(self.base_url), self.cursor_query_param)
        created_at, ident = ((row["created_at"], row["id"]) if isinstance(row, dict)
                             else (row.created_at, row.id))
        return str(replace_query_param(url, self.cursor_query_param,
                                       _encode(reverse, created_at, ident)))

    def get_next_link(self) -> str | None:
        return self._link(False, self.page[-1]) if self.has_next and self.page else None

    def get_previous_link(self) -> str | None:
        return self._link(True, self.page[0]) if self.has_previous and self.page else None
