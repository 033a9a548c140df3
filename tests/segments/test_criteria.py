"""The definition language: every operator against real PostgreSQL JSON, tenant isolation,
one query, and validation errors that name the path of the bad node."""

from __future__ import annotations

from typing import Any

import pytest

from apps.recipients.models import Device
from apps.segments.criteria import MAX_DEPTH, MAX_LEAVES, definition_errors
from apps.segments.models import Segment
from apps.segments.selectors import segment_queryset
from tests.factories import ClientFactory, RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(client_tenant: Any) -> dict[str, Any]:
    """Recipients whose attributes cover the awkward cases: numbers vs numeric strings,
    booleans, lists, nested objects, nulls and absent keys."""
    rows = {
        "n9": {"age": 9, "plan": "free", "tags": ["new"], "since": "2023-11-30"},
        "n10": {"age": 10, "plan": "pro", "tags": ["vip", "beta"], "since": "2024-01-15",
                "orders": {"count": 3, "last": "2024-02-01"}},
        "n10_5": {"age": 10.5, "plan": "team", "tags": "vip-ish", "since": "2024-03-01"},
        "n100": {"age": 100, "plan": "pro", "vip": True, "orders": {"count": 12}},
        "str100": {"age": "100", "plan": "Pro", "vip": False, "note": None},
        "bool": {"age": True, "plan": ["pro"], "tags": [1, 2]},
        "bare": {},
    }
    return {name: RecipientFactory(client=client_tenant, external_id=name, attributes=attributes)
            for name, attributes in rows.items()}


def matching(client: Any, definition: dict[str, Any]) -> list[str]:
    assert definition_errors(definition) == {}, definition_errors(definition)
    segment = Segment.objects.create(client=client, name="s", key=f"s{Segment.objects.count()}",
                                     definition=definition)
    return sorted(segment_queryset(segment=segment).values_list("external_id", flat=True))


def leaf(attribute: str, op: str, value: Any = None) -> dict[str, Any]:
    node = {"attribute": attribute, "op": op}
    if value is not None:
        node["value"] = value
    return {"all": [node]}


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("gt", 9, ["n10", "n100", "n10_5"]),        # as text, "10" and "100" sort before "9"
    ("gte", 10, ["n10", "n100", "n10_5"]),
    ("lt", 10.5, ["n10", "n9"]),
    ("lte", 10.5, ["n10", "n10_5", "n9"]),
    ("gt", 99.9, ["n100"]),                     # the string "100" and true are not numbers
])
def test_numeric_comparisons_compare_json_numbers_as_numbers(
    client_tenant: Any, people: Any, op: str, value: Any, expected: list[str]
) -> None:
    assert matching(client_tenant, leaf("age", op, value)) == expected


def test_string_comparisons_order_iso_dates(client_tenant: Any, people: Any) -> None:
    assert matching(client_tenant, leaf("since", "gte", "2024-01-15")) == ["n10", "n10_5"]
    assert matching(client_tenant, leaf("since", "lt", "2024-01-01")) == ["n9"]
    assert matching(client_tenant, leaf("orders.last", "gt", "2024")) == ["n10"]


def test_equals_matches_the_value_and_its_type_only(client_tenant: Any, people: Any) -> None:
    assert matching(client_tenant, leaf("plan", "equals", "pro")) == ["n10", "n100"]  # not ["pro"]
    assert matching(client_tenant, leaf("age", "equals", 100)) == ["n100"]  # not "100"
    assert matching(client_tenant, leaf("age", "equals", 10.5)) == ["n10_5"]
    assert matching(client_tenant, leaf("vip", "equals", False)) == ["str100"]
    assert matching(client_tenant, leaf("orders.count", "equals", 3)) == ["n10"]


def test_in_matches_any_listed_value(client_tenant: Any, people: Any) -> None:
    assert matching(client_tenant, leaf("plan", "in", ["team", "free"])) == ["n10_5", "n9"]
    assert matching(client_tenant, leaf("age", "in", [9, 100])) == ["n100", "n9"]


def test_contains_is_substring_for_strings_and_membership_for_lists(
    client_tenant: Any, people: Any
) -> None:
    assert matching(client_tenant, leaf("tags", "contains", "vip")) == ["n10", "n10_5"]
    assert matching(client_tenant, leaf("tags", "contains", "ish")) == ["n10_5"]
    assert matching(client_tenant, leaf("tags", "contains", ["beta", "vip"])) == ["n10"]
    assert matching(client_tenant, leaf("tags", "contains", 2)) == ["bool"]
    assert matching(client_tenant, leaf("tags", "contains", "%")) == []  # LIKE is escaped


def test_exists_means_present_and_not_null(client_tenant: Any, people: Any) -> None:
    assert matching(client_tenant, leaf("orders", "exists", True)) == ["n10", "n100"]
    assert matching(client_tenant, leaf("note", "exists", True)) == []
    assert matching(client_tenant, {"all": [{"attribute": "vip", "op": "exists"}]}) == [
        "n100", "str100"]
    assert "str100" in matching(client_tenant, leaf("note", "exists", False))
    assert "n100" not in matching(client_tenant, leaf("vip", "exists", False))


def test_nested_all_and_any(client_tenant: Any, people: Any) -> None:
    definition = {"any": [
        {"all": [{"attribute": "plan", "op": "equals", "value": "pro"},
                 {"attribute": "age", "op": "lt", "value": 50}]},
        {"all": [{"attribute": "tags", "op": "contains", "value": 1},
                 {"any": [{"attribute": "bare", "op": "exists"},
                          {"attribute": "age", "op": "equals", "value": True}]}]},
    ]}
    assert matching(client_tenant, definition) == ["bool", "n10"]


def test_empty_all_matches_everyone_even_inside_any(client_tenant: Any, people: Any) -> None:
    assert len(matching(client_tenant, {"all": []})) == len(people)
    assert len(matching(client_tenant, {"any": [{"all": []}, leaf("age", "gt", 99)]})) == len(people)


def test_attribute_keys_named_like_lookups_are_plain_keys(client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="odd",
                     attributes={"contains": 1, "in": {"exact": "x"}})
    RecipientFactory(client=client_tenant, external_id="plain", attributes={"exact": "x"})
    assert matching(client_tenant, leaf("contains", "equals", 1)) == ["odd"]
    assert matching(client_tenant, leaf("in.exact", "equals", "x")) == ["odd"]


def test_recipient_fields(client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="fr", locale="fr", timezone="Europe/Paris",
                     phone="+33612345678")
    RecipientFactory(client=client_tenant, external_id="en", locale="en-GB", email="")
    pushy = RecipientFactory(client=client_tenant, external_id="push", email="", locale="de")
    Device.objects.create(client=client_tenant, recipient=pushy, token="t1", platform="ios")
    gone = RecipientFactory(client=client_tenant, external_id="gone", email="", locale="de")
    Device.objects.create(client=client_tenant, recipient=gone, token="t2", platform="ios",
                          is_active=False)

    assert matching(client_tenant, leaf("recipient.locale", "equals", "fr")) == ["fr"]
    assert matching(client_tenant, leaf("recipient.locale", "in", ["fr", "de"])) == [
        "fr", "gone", "push"]
    assert matching(client_tenant, leaf("recipient.locale", "contains", "GB")) == ["en"]
    assert matching(client_tenant, leaf("recipient.timezone", "equals", "Europe/Paris")) == ["fr"]
    assert matching(client_tenant, leaf("recipient.has_email", "equals", False)) == [
        "en", "gone", "push"]
    assert matching(client_tenant, leaf("recipient.has_phone", "equals", True)) == ["fr"]
    assert matching(client_tenant, leaf("recipient.has_whatsapp", "equals", True)) == ["fr"]
    assert matching(client_tenant, leaf("recipient.has_push", "equals", True)) == ["push"]
    assert "push" not in matching(client_tenant, leaf("recipient.has_push", "equals", False))


def test_a_segment_only_ever_sees_its_own_clients_recipients(client_tenant: Any) -> None:
    other = ClientFactory()
    RecipientFactory(client=client_tenant, external_id="mine", attributes={"plan": "pro"})
    RecipientFactory(client=other, external_id="theirs", attributes={"plan": "pro"})
    assert matching(client_tenant, leaf("plan", "equals", "pro")) == ["mine"]
    assert matching(client_tenant, {"all": []}) == ["mine"]


def test_the_segment_queryset_is_one_query(
    client_tenant: Any, people: Any, django_assert_num_queries: Any
) -> None:
    segment = Segment.objects.create(client=client_tenant, name="s", key="s", definition={"any": [
        {"all": [{"attribute": "age", "op": "gte", "value": 10},
                 {"attribute": "tags", "op": "contains", "value": "vip"}]},
        {"attribute": "plan", "op": "in", "value": ["team"]},
        {"attribute": "recipient.has_push", "op": "equals", "value": False},
    ]})
    with django_assert_num_queries(1):
        rows = list(segment_queryset(segment=segment))
    assert len(rows) == len(people)
    with django_assert_num_queries(1):
        assert segment_queryset(segment=segment).count() == len(people)


# --- validation -------------------------------------------------------------------------------

def nest(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"attribute": "a", "op": "exists"}
    for _ in range(depth):
        node = {"all": [node]}
    return node


@pytest.mark.parametrize(("definition", "path", "fragment"), [
    ({"all": [leaf("a", "exists")["all"][0], {"attribute": "a", "op": "like", "value": 1}]},
     "definition.all[1].op", "Unknown operator"),
    ({"all": [{"attribute": "plan'; DROP TABLE x;--", "op": "equals", "value": 1}]},
     "definition.all[0].attribute", "letters, digits and underscores"),
    ({"all": [{"attribute": "123", "op": "equals", "value": 1}]},
     "definition.all[0].attribute", "not digits only"),
    ({"any": [{"all": [{"attribute": "age", "op": "gt", "value": True}]}]},
     "definition.any[0].all[0].value", "number"),
    ({"all": [{"attribute": "age", "op": "gt"}]}, "definition.all[0].value", "Required"),
    ({"all": [{"attribute": "plan", "op": "in", "value": []}]}, "definition.all[0].value", "list"),
    ({"all": [{"attribute": "plan", "op": "equals", "value": {"a": 1}}]},
     "definition.all[0].value", "string"),
    ({"all": [{"attribute": "plan", "op": "exists", "value": "yes"}]},
     "definition.all[0].value", "true or false"),
    ({"all": [{"attribute": "plan", "op": "equals", "value": 1, "extra": 2}]},
     "definition.all[0].extra", "Unknown key"),
    ({"all": [{"attribute": "recipient.has_email", "op": "gt", "value": 1}]},
     "definition.all[0].op", "only 'equals'"),
    ({"all": [{"attribute": "recipient.locale", "op": "lt", "value": "fr"}]},
     "definition.all[0].op", "supports equals"),
    ({"all": [{"attribute": "recipient.password", "op": "equals", "value": "x"}]},
     "definition.all[0].attribute", "Unknown recipient field"),
    ({"all": "plan"}, "definition.all", "list"),
    ({"any": []}, "definition.any", "at least one"),
    ({"all": [], "any": []}, "definition", "exactly one key"),
    ([1, 2], "definition", "Must be an object"),
    (nest(MAX_DEPTH + 1), "definition" + ".all[0]" * MAX_DEPTH + ".all", "5 levels"),
    ({"all": [{"attribute": "a", "op": "exists"}] * (MAX_LEAVES + 1)}, "definition", "At most 50"),
])
def test_validation_names_the_path_of_the_bad_node(definition: Any, path: str, fragment: str) -> None:
    errors = definition_errors(definition)
    assert path in errors, errors
    assert any(fragment in message for message in errors[path]), errors[path]


def test_the_limits_themselves_are_allowed() -> None:
    assert definition_errors(nest(MAX_DEPTH)) == {}
    assert definition_errors({"all": [{"attribute": "a", "op": "exists"}] * MAX_LEAVES}) == {}
    assert definition_errors({"attribute": "plan", "op": "equals", "value": "pro"}) == {}
