from typing import Any

from rest_framework import pagination, serializers
from rest_framework.request import Request


class CursorPagination(pagination.CursorPagination):
    """Stable, index-friendly pagination for growing tables: newest first by created_at.

    `page_size`: an integer from 1; above `max_page_size` it is capped; empty means the default;
    anything else is 400 `invalid` on `page_size` (DRF would silently use the default)."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int | None:
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise serializers.ValidationError(
                {self.page_size_query_param: ["A whole number from 1."]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (f"Results per page (default {self.page_size}, "
                                            f"capped at {self.max_page_size}).")
        return parameters
