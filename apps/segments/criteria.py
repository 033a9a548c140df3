"""The segment definition language: a criteria tree over a recipient's attributes and own
fields, checked into error paths (`definition.all[1].op`) and compiled into one Q object.

    {"all": [                                   # every child matches ("any": at least one)
        {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
        {"attribute": "orders.count", "op": "gte", "value": 3},          # nested JSON keys
        {"any": [{"attribute": "tags", "op": "contains", "value": "vip"},
                 {"attribute": "recipient.locale", "op": "equals", "value": "fr"}]},
    ]}

Attribute names are dotted paths into `Recipient.attributes`, each part `[A-Za-z0-9_]+` with at
least one letter or underscore (an all-digit part would be read as an array index). Keys reach
SQL only as bound parameters, never in the statement text or a lookup string. The prefix
`recipient.` names the recipient's own fields instead: `locale`, `timezone`, `external_id`,
and the booleans `has_email`, `has_phone`, `has_whatsapp`, `has_push`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import CharField, Exists, Func, OuterRef, Q, Value
from django.db.models.fields.json import JSONField, KeyTextTransform, KeyTransform
from django.db.models.functions import Collate
from django.db.models.lookups import (
    Contains,
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
)

from apps.recipients.models import Device

MAX_DEPTH = 5  # nested groups
MAX_LEAVES = 50  # conditions in one definition
MAX_PATH_PARTS = 5
MAX_KEY_LENGTH = 100
MAX_IN_VALUES = 1000
MAX_STRING_LENGTH = 500

KEY_PART = re.compile(r"[A-Za-z0-9_]+")
RECIPIENT_PREFIX = "recipient."
OPS = ("equals", "in", "gt", "gte", "lt", "lte", "contains", "exists")
GROUPS = ("all", "any")
RECIPIENT_TEXT_FIELDS = ("locale", "timezone", "external_id")
RECIPIENT_FLAGS = ("has_email", "has_phone", "has_whatsapp", "has_push")
JSON_TYPES_PRESENT = ["string", "number", "boolean", "array", "object"]  # everything but null

_COMPARISONS = {"gt": GreaterThan, "gte": GreaterThanOrEqual, "lt": LessThan,
                "lte": LessThanOrEqual}


# --- checking ------------------------------------------------------------------------------------

@dataclass
class _Check:
    errors: dict[str, list[str]] = field(default_factory=dict)
    leaves: int = 0

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)


def definition_errors(definition: Any, *, path: str = "definition") -> dict[str, list[str]]:
    """Every problem of a definition, keyed by the path of the bad node; empty when valid."""
    check = _Check()
    _check_node(definition, path, 0, check)
    if check.leaves > MAX_LEAVES:
        check.add(path, f"At most {MAX_LEAVES} conditions per segment; this has {check.leaves}.")
    return check.errors


def _check_node(node: Any, path: str, depth: int, check: _Check) -> None:
    if not isinstance(node, dict):
        check.add(path, 'Must be an object: {"all": [...]}, {"any": [...]} or a condition.')
        return
    groups = [name for name in GROUPS if name in node]
    if not groups:
        _check_condition(node, path, check)
        return
    if len(node) != 1:
        check.add(path, "A group has exactly one key: 'all' or 'any'.")
        return
    name = groups[0]
    children, children_path = node[name], f"{path}.{name}"
    if depth + 1 > MAX_DEPTH:
        check.add(children_path, f"Groups nest at most {MAX_DEPTH} levels deep.")
        return
    if not isinstance(children, list):
        check.add(children_path, "Must be a list of conditions and groups.")
        return
    if name == "any" and not children:
        check.add(children_path, "An 'any' group needs at least one condition.")
    for index, child in enumerate(children):
        _check_node(child, f"{children_path}[{index}]", depth + 1, check)


def attribute_path_error(attribute: Any) -> str | None:
    """Why an attribute name is not usable, or None."""
    if not isinstance(attribute, str) or not attribute:
        return "A non-empty string."
    if attribute.startswith(RECIPIENT_PREFIX):
        name = attribute[len(RECIPIENT_PREFIX):]
        if name not in RECIPIENT_TEXT_FIELDS + RECIPIENT_FLAGS:
            known = ", ".join(RECIPIENT_PREFIX + f for f in RECIPIENT_TEXT_FIELDS + RECIPIENT_FLAGS)
            return f"Unknown recipient field; use one of: {known}."
        return None
    parts = attribute.split(".")
    if len(attribute) > MAX_KEY_LENGTH or len(parts) > MAX_PATH_PARTS:
        return f"At most {MAX_KEY_LENGTH} characters and {MAX_PATH_PARTS} dotted parts."
    for part in parts:
        if not KEY_PART.fullmatch(part) or part.isdigit():
            return ("Attribute keys are letters, digits and underscores (not digits only), "
                    "dotted for nested objects, e.g. 'plan' or 'orders.count'.")
    return None


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_STRING_LENGTH
    return isinstance(value, bool) or _is_number(value)


def _scalar_list(value: Any, *, strings_only: bool = False) -> bool:
    return (
        isinstance(value, list) and 0 < len(value) <= MAX_IN_VALUES
        and all(isinstance(v, str) and len(v) <= MAX_STRING_LENGTH if strings_only
                else _is_scalar(v) for v in value)
    )


_SCALAR = f"a string (at most {MAX_STRING_LENGTH} characters), a number or true/false"
_LIST = f"a non-empty list (at most {MAX_IN_VALUES} items) of"


def _attribute_value_error(op: str, value: Any) -> str | None:
    if op == "equals":
        return None if _is_scalar(value) else f"Must be {_SCALAR}."
    if op == "in":
        return None if _scalar_list(value) else f"Must be {_LIST} strings, numbers or true/false."
    if op in _COMPARISONS:
        if _is_number(value) or (isinstance(value, str) and len(value) <= MAX_STRING_LENGTH):
            return None
        return "Must be a number (compared as a number) or a string (compared as text)."
    if op == "contains":
        if _is_scalar(value) or _scalar_list(value):
            return None
        return f"Must be {_SCALAR}, or {_LIST} them."
    if op == "exists":
        return None if isinstance(value, bool) else "Must be true or false."
    raise AssertionError(op)


def _field_value_error(name: str, op: str, value: Any) -> tuple[str, str] | None:
    """(which key is wrong, why) for a `recipient.*` condition, or None."""
    if name in RECIPIENT_FLAGS:
        if op != "equals":
            return "op", f"recipient.{name} supports only 'equals' (true or false)."
        return None if isinstance(value, bool) else ("value", "Must be true or false.")
    if op in _COMPARISONS:
        return "op", f"recipient.{name} supports equals, in, contains and exists."
    if op == "exists":
        return None if isinstance(value, bool) else ("value", "Must be true or false.")
    if op == "in":
        return None if _scalar_list(value, strings_only=True) else (
            "value", f"Must be {_LIST} strings.")
    if isinstance(value, str) and len(value) <= MAX_STRING_LENGTH:
        return None
    return "value", f"Must be a string (at most {MAX_STRING_LENGTH} characters)."


def _check_condition(node: dict[str, Any], path: str, check: _Check) -> None:
    check.leaves += 1
    for key in sorted(set(node) - {"attribute", "op", "value"}):
        check.add(f"{path}.{key}", "Unknown key; a condition has 'attribute', 'op' and 'value'.")
    attribute, op = node.get("attribute"), node.get("op")
    attribute_error = attribute_path_error(attribute)
    if attribute_error:
        check.add(f"{path}.attribute", attribute_error)
    if op not in OPS:
        check.add(f"{path}.op", f"Unknown operator; use one of: {', '.join(OPS)}.")
        return
    if "value" not in node and op != "exists":
        check.add(f"{path}.value", "Required.")
        return
    if attribute_error or not isinstance(attribute, str):
        return
    value = node.get("value", True)
    if attribute.startswith(RECIPIENT_PREFIX):
        problem = _field_value_error(attribute[len(RECIPIENT_PREFIX):], op, value)
        if problem:
            check.add(f"{path}.{problem[0]}", problem[1])
        return
    message = _attribute_value_error(op, value)
    if message:
        check.add(f"{path}.value", message)


# --- compiling -----------------------------------------------------------------------------------

class JsonbTypeof(Func):
    """jsonb_typeof(expr): 'object', 'array', 'string', 'number', 'boolean', 'null' (or SQL NULL
    when the key is absent)."""

    function = "jsonb_typeof"
    output_field = CharField()


def _json(parts: list[str]) -> KeyTransform:
    expression = KeyTransform(parts[0], "attributes")
    for part in parts[1:]:
        expression = KeyTransform(part, expression)
    return expression


def _json_text(parts: list[str]) -> KeyTextTransform:
    return KeyTextTransform(parts[-1], _json(parts[:-1]) if len(parts) > 1 else "attributes")


def _nested(parts: list[str], value: Any) -> dict[str, Any]:
    for part in reversed(parts):
        value = {part: value}
    return value


def _is_type(parts: list[str], json_type: str) -> Q:
    return Q(Exact(JsonbTypeof(_json(parts)), json_type))


def has_address_q(flag: str) -> Q:
    """Recipients with an address for `has_email` / `has_phone` / `has_whatsapp` / `has_push`."""
    if flag == "has_email":
        return ~Q(email="")
    if flag == "has_phone":
        return ~Q(phone="")
    if flag == "has_whatsapp":  # WhatsApp falls back to the phone number (Recipient.address_for)
        return ~Q(whatsapp="") | ~Q(phone="")
    if flag == "has_push":
        return Q(Exists(Device.objects.filter(recipient=OuterRef("pk"), is_active=True)))
    raise ValueError(flag)


def _attribute_q(parts: list[str], op: str, value: Any) -> Q:
    if op == "equals":
        # Containment, not `->` equality: the same meaning for scalars, and a GIN index on
        # attributes (jsonb_path_ops) can serve it.
        return Q(attributes__contains=_nested(parts, value))
    if op == "in":
        return Q(In(_json(parts), [Value(v, output_field=JSONField()) for v in value]))
    if op in _COMPARISONS:
        lookup = _COMPARISONS[op]
        if _is_number(value):
            # jsonb numbers compare numerically; the type check keeps strings, booleans and
            # objects (which jsonb orders around numbers) out.
            return _is_type(parts, "number") & Q(
                lookup(_json(parts), Value(value, output_field=JSONField()))
            )
        # Text compares byte-wise ("C"), so ISO 8601 dates and times order correctly.
        return _is_type(parts, "string") & Q(lookup(Collate(_json_text(parts), "C"), value))
    if op == "contains":
        values = value if isinstance(value, list) else [value]
        in_list = Q(attributes__contains=_nested(parts, values))
        if isinstance(value, str):
            return in_list | (_is_type(parts, "string") & Q(Contains(_json_text(parts), value)))
        return in_list
    if op == "exists":
        present = Q(In(JsonbTypeof(_json(parts)), JSON_TYPES_PRESENT))
        if value:
            return present
        return Q(IsNull(JsonbTypeof(_json(parts)), True)) | _is_type(parts, "null")
    raise AssertionError(op)


def _field_q(name: str, op: str, value: Any) -> Q:
    if name in RECIPIENT_FLAGS:
        return has_address_q(name) if value else ~has_address_q(name)
    # `name` is one of RECIPIENT_TEXT_FIELDS (checked): the lookup strings are fixed names.
    if op == "equals":
        return Q(**{name: value})
    if op == "in":
        return Q(**{f"{name}__in": value})
    if op == "contains":
        return Q(**{f"{name}__contains": value})
    if op == "exists":
        return ~Q(**{name: ""}) if value else Q(**{name: ""})
    raise AssertionError(op)


def definition_q(definition: dict[str, Any]) -> Q:
    """The Q object of a definition that `definition_errors` accepted."""
    if "all" in definition:
        children = definition["all"]
        if not children:
            return Q(pk__isnull=False)  # an empty "all" matches everyone, also inside an "any"
        query = definition_q(children[0])
        for child in children[1:]:
            query &= definition_q(child)
        return query
    if "any" in definition:
        children = definition["any"]
        query = definition_q(children[0])
        for child in children[1:]:
            query |= definition_q(child)
        return query
    attribute, op = definition["attribute"], definition["op"]
    value = definition.get("value", True)
    if attribute.startswith(RECIPIENT_PREFIX):
        return _field_q(attribute[len(RECIPIENT_PREFIX):], op, value)
    return _attribute_q(attribute.split("."), op, value)
