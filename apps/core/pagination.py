import binascii
from base64 import b64decode
from typing import Any
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, pagination, serializers
from rest_framework.request import Request

PAGE_SIZE_MESSAGE = "A whole number from 1."
CURSOR_MESSAGE = "Not a cursor from this list: follow the `next`/`previous` links."


class CursorPagination(pagination.CursorPagination):
    """Stable, index-friendly pagination for growing tables: newest first by created_at.

    Every paginated list uses this class (or a subclass), so its checks hold everywhere:
    `page_size`: an integer from 1; above `max_page_size` it is capped; empty means the default;
    anything else is 400 `invalid` on `page_size` (DRF would silently use the default).
    `cursor`: one this list handed out in `next`/`previous`; anything else is 400 `invalid` on
    `cursor` (DRF answers 404, or a 500 for a cursor whose position is not the ordering's
    type)."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int | None:
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        if not (raw.isascii() and raw.isdigit()):
            raise serializers.ValidationError({self.page_size_query_param: [PAGE_SIZE_MESSAGE]})
        digits = raw.lstrip("0")
        if not digits:
            raise serializers.ValidationError({self.page_size_query_param: [PAGE_SIZE_MESSAGE]})
        # Compare by length first: int() refuses strings over 4,300 digits (a 500).
        if len(digits) > len(str(self.max_page_size)):
            return self.max_page_size
        return min(int(digits), self.max_page_size)

    def _invalid_cursor(self) -> serializers.ValidationError:
        return serializers.ValidationError({self.cursor_query_param: [CURSOR_MESSAGE]})

    def decode_cursor(self, request: Request) -> pagination.Cursor | None:
        # DRF's decoding drops what is not base64 ("!!!" reads as no cursor: the first page)
        # and ignores unknown keys; a cursor we hand out is strict base64 of o/r/p only.
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded:
            try:
                tokens = parse.parse_qs(b64decode(encoded.encode("ascii"), validate=True)
                                        .decode("ascii"), keep_blank_values=True,
                                        strict_parsing=True)
            except (binascii.Error, UnicodeError, ValueError) as exc:
                raise self._invalid_cursor() from exc
            if not tokens or set(tokens) - {"o", "r", "p"}:
                raise self._invalid_cursor()
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            raise self._invalid_cursor() from exc

    def paginate_queryset(self, queryset: Any, request: Request,
                          view: Any = None) -> list[Any] | None:
        try:
            return super().paginate_queryset(queryset, request, view)
        except DjangoValidationError as exc:  # the cursor's position is not the ordering's type
            raise self._invalid_cursor() from exc

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (f"Results per page (default {self.page_size}, "
                                            f"capped at {self.max_page_size}).")
            elif parameter["name"] == self.cursor_query_param:
                parameter["description"] = ("From a previous page's `next` or `previous` link; "
                                            "any other value is 400 `invalid` on `cursor`.")
        return parameters
