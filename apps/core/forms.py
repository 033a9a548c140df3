"""Form fields shared by the admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

from .parsers import JSONInputError, loads


class CheckedJSONFormField(forms.JSONField):
    """forms.JSONField refusing, as a form error instead of a 500, what the API's JSON parser
    refuses (apps.core.parsers): a NUL or a lone surrogate in a string or key (PostgreSQL
    cannot store them), nesting deeper than API_JSON_MAX_DEPTH (Python's decoder raises
    RecursionError), NaN/Infinity (jsonb refuses them)."""

    def to_python(self, value: Any) -> Any:
        if not self.disabled and isinstance(value, str) and value not in self.empty_values:
            try:
                loads(value)
            except JSONInputError as exc:
                problems = [m for messages in exc.fields.values() for m in messages]
                where = [name for name in exc.fields if name != "body"]
                detail = f" ({', '.join(where)})" if where else ""
                raise ValidationError(
                    f"{problems[0] if problems else exc.message}{detail}", code="invalid",
                ) from exc
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        """The form shown again with the error keeps the text as typed (parsing it again
        would put the lone surrogate in the page, or recurse 5,000 levels deep)."""
        if not self.disabled and isinstance(data, str):
            try:
                loads(data)
            except JSONInputError:
                return InvalidJSONInput(data)
        return super().bound_data(data, initial)
