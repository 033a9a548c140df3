from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Stable, index-friendly pagination for growing tables: newest first by created_at."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500
