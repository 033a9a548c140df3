from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from apps.core.exceptions import ApplicationError
from apps.templates.rendering import (
    SOURCE_FIELDS,
    MissingVariablesError,
    RenderError,
    preview,
    render_for_channel,
    render_part,
    required_variables,
    source_parts,
    template_variables,
)
from apps.templates.services import template_version_create
from tests.factories import TemplateFactory


def test_required_variables_come_from_every_part_and_exclude_builtins() -> None:
    assert template_variables("Hi {{ name }}", "{% if vip %}{{ code }}{% endif %}",
                              "{{ recipient.id }}") == ["code", "name", "vip"]


def test_loop_variables_are_not_required() -> None:
    assert template_variables("{% for item in items %}{{ item }}{% endfor %}") == ["items"]


def test_syntax_error_is_reported() -> None:
    with pytest.raises(RenderError, match="syntax"):
        template_variables("{{ name ")


def test_undefined_variable_fails_instead_of_rendering_blank() -> None:
    with pytest.raises(RenderError):
        render_part("v1", "text", "Hi {{ nmae }}", {"name": "Ada"}, html=False)


def test_html_is_autoescaped_and_text_is_not() -> None:
    ctx = {"name": "<b>Ada</b>"}
    assert render_part("v2", "html", "{{ name }}", ctx, html=True) == "&lt;b&gt;Ada&lt;/b&gt;"
    assert render_part("v2", "text", "{{ name }}", ctx, html=False) == "<b>Ada</b>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{% set x = [].append(1) %}{{ x }}",
    ],
)
def test_sandbox_escape_attempts_fail(source: str) -> None:
    with pytest.raises(RenderError):
        render_part("v3", "text", source, {"name": "Ada"}, html=False)


@pytest.mark.django_db
def test_versions_are_numbered_and_the_new_one_is_published() -> None:
    template = TemplateFactory()
    second = template_version_create(template=template, subject="v2 {{ x }}", text_body="b")
    template.refresh_from_db()
    assert second.version == 2
    assert template.active_version == second
    assert second.required_variables == ["x"]


@pytest.mark.django_db
def test_a_version_with_a_syntax_error_is_refused() -> None:
    template = TemplateFactory()
    with pytest.raises(ApplicationError) as exc:
        template_version_create(template=template, subject="{% if %}")
    assert exc.value.code == "template_syntax_error"
    assert template.versions.count() == 1


@pytest.mark.django_db
def test_a_notification_renders_the_version_it_was_accepted_with(
    client_tenant: Any, clean_sandbox: Any
) -> None:
    from apps.notifications.dispatch import deliveries_dispatch
    from apps.notifications.services import notification_send

    template = TemplateFactory(client=client_tenant, key="snap", version__subject="First {{ name }}")
    notification = notification_send(client=client_tenant, template_id="snap",
                                     recipients=[{"id": "a", "email": "a@example.com"}],
                                     variables={"name": "Ada"}).notification
    template_version_create(template=template, subject="Second {{ name }}", text_body="x")
    deliveries_dispatch(delivery_ids=[str(d.id) for d in notification.deliveries.all()])
    [message] = clean_sandbox.messages(to="a@example.com")
    assert message["subject"] == "First Ada"


# --- sandbox: escapes, resource bombs, unsupported tags ---------------------------------------

@pytest.mark.parametrize(
    "source",
    [
        "{{ name|attr('__class__') }}",
        "{{ '{0.__class__.__mro__}'.format(name) }}",
        "{{ ('{0.__class__}'|attr('format'))(name) }}",  # CVE-2025-27516 shape
        "{{ lipsum.__globals__ }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ range.__self__ }}",
        "{{ config }}",
        "{{ request }}",
        "{% set d = {} %}{{ d.update(a=1) }}",
        "{{ items.pop() }}",
        "{{ recipient.__class__ }}",
    ],
)
def test_more_sandbox_escape_attempts_fail(source: str) -> None:
    with pytest.raises(RenderError):
        render_part("v4", "text", source, {"name": "Ada", "items": [1], "recipient": {"id": "x"}},
                    html=False)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 1000000000 }}",
        "{% set a = ['x' * 100000] * 100000 %}{{ a|length }}",
        "{{ 2 ** 1000000 }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '%999999999s'|format(1) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ ('{:>999999999}'|attr('format'))(1) }}",
        "{{ 'x'|center(999999999) }}",
        "{{ 'x'.ljust(999999999) }}",
        "{{ ('\t' * 100).expandtabs(999999) }}",
        "{{ range(100000)|join('x' * 100000) }}",
        "{{ ('x' * 100000).join(range(100000)|map('string')) }}",
        "{{ ('a' * 100000)|replace('a', 'a' * 100000) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(l=['x' * 100000]) %}{% for i in range(30) %}"
        "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
        "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",  # output cap
        "{{ lipsum(1000000) }}",
    ],
)
def test_memory_bombs_are_refused_instead_of_exhausting_the_worker(source: str) -> None:
    with pytest.raises(RenderError):
        render_part("v5", "text", source, {}, html=False)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '-' * 20 }}", "-" * 20),
        ("{{ '%05.2f'|format(3.14159) }}", "03.14"),
        ("{{ '{:>5}'.format(1) }}", "    1"),
        ("{{ [1, 2, 3]|join(', ') }}", "1, 2, 3"),
        ("{{ 'a-b'|replace('-', ' / ') }}", "a / b"),
        ("{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}{% endfor %}"
         "{{ ns.n }}", "10"),
        ("{{ 'x'|center(5) }}", "  x  "),
        ("{{ 2 ** 10 }}", "1024"),
    ],
)
def test_ordinary_template_features_still_work(source: str, expected: str) -> None:
    assert render_part("v6", "text", source, {}, html=False) == expected


@pytest.mark.parametrize(
    ("part", "source", "message"),
    [
        ("html_body", "<p>{{ name }</p>", "line 1"),
        ("sms_body", "ok\n{% for x in items %}", "line 2"),
        ("text_body", "{{ name|no_such_filter }}", "No filter named"),
        ("subject", "{% if x is no_such_test %}{% endif %}", "No test named"),
        ("html_body", "{% include 'footer.html' %}", "include is not supported"),
        ("text_body", "{% extends 'base' %}", "extends is not supported"),
        ("text_body", "{% macro f() %}x{% endmacro %}{{ f() }}", "macro is not supported"),
        ("text_body", "{% import 'm' as m %}", "import is not supported"),
    ],
)
def test_a_source_that_cannot_render_is_refused_at_creation_naming_its_part(
    part: str, source: str, message: str
) -> None:
    with pytest.raises(RenderError) as exc:
        required_variables({part: source})
    assert exc.value.part == part
    assert part in str(exc.value) and message in str(exc.value)


def test_push_data_values_are_sources_too() -> None:
    parts = source_parts(push_title="Hi", push_data={"url": "/orders/{{ order_id }}", "n": "1"})
    assert required_variables(parts) == ["order_id"]
    with pytest.raises(RenderError) as exc:
        required_variables(source_parts(push_data={"url": "{{ oops"}))
    assert exc.value.part == "push_data.url"


def test_a_variable_cannot_add_header_lines_to_a_subject() -> None:
    version = SimpleNamespace(id="v7", subject="Hi {{ name }}", text_body="x", html_body="")
    rendered = render_for_channel(version, "email", {"name": "Ada\r\nBcc: evil@example.com"})
    assert rendered.subject == "Hi Ada Bcc: evil@example.com"


def test_html_autoescape_covers_attributes_and_markup_in_variables() -> None:
    out = render_part("v8", "html", '<a href="{{ url }}">{{ label }}</a>',
                      {"url": '" onmouseover="x()', "label": "<script>x()</script>"}, html=True)
    assert out == ('<a href="&#34; onmouseover=&#34;x()">&lt;script&gt;x()&lt;/script&gt;</a>')


def test_a_variable_is_never_evaluated_as_template_code() -> None:
    assert render_part("v9", "text", "{{ name }}", {"name": "{{ 7 * 7 }}"}, html=False) == "{{ 7 * 7 }}"


def test_unicode_and_empty_sources_render() -> None:
    assert render_part("v10", "text", "Grüße, {{ name }} 👋", {"name": "Zoë"}, html=False) == "Grüße, Zoë 👋"
    assert render_part("v10", "text", "", {}, html=False) == ""


# --- preview ---------------------------------------------------------------------------------

def _version(**content: Any) -> Any:
    fields = {"id": "preview-1", "locale": "en", "subject": "", "text_body": "", "html_body": "",
              "sms_body": "", "whatsapp_body": "", "whatsapp_content_sid": "", "push_title": "",
              "push_body": "", "push_data": {}, "in_app_title": "", "in_app_body": "",
              "in_app_action_url": "", "in_app_data": {}, **content}
    fields["required_variables"] = required_variables(source_parts(
        **{k: v for k, v in fields.items()
           if k in SOURCE_FIELDS or k in ("push_data", "in_app_data")}))
    return SimpleNamespace(**fields)


def test_preview_renders_every_channel_the_template_or_version_has() -> None:
    version = _version(subject="Hi {{ name }}", text_body="Text {{ name }}",
                       html_body="<p>{{ name }}</p>", sms_body="SMS {{ code }}",
                       push_title="Push {{ name }}", push_data={"url": "/c/{{ code }}"})
    out = preview(version, {"name": "<Ada>", "code": "42"}, channels=["email"])
    assert out == {
        "email": {"subject": "Hi <Ada>", "text": "Text <Ada>", "html": "<p>&lt;Ada&gt;</p>"},
        "sms": {"body": "SMS 42"},
        "push": {"title": "Push <Ada>", "body": "SMS 42", "data": {"url": "/c/42"}},
    }


def test_preview_renders_in_app_content_with_its_fallbacks_and_a_safe_action_url() -> None:
    version = _version(subject="Hi {{ name }}", text_body="Text {{ name }}",
                       in_app_action_url="{{ link }}", in_app_data={"n": "{{ name }}", "k": 2})
    safe = preview(version, {"name": "Ada", "link": "/orders/1"}, channels=["in_app"])
    unsafe = preview(version, {"name": "Ada", "link": "javascript:alert(1)"}, channels=["in_app"])
    assert safe["in_app"] == {"title": "Hi Ada", "body": "Text Ada", "action_url": "/orders/1",
                              "data": {"n": "Ada", "k": 2}}
    assert unsafe["in_app"]["action_url"] == ""  # never a script link in someone's page


def test_preview_includes_a_template_channel_served_by_a_fallback() -> None:
    version = _version(text_body="Hello")
    assert preview(version, {}, channels=["email", "whatsapp"])["whatsapp"] == {
        "body": "Hello", "content_sid": ""}


def test_preview_names_every_missing_variable() -> None:
    version = _version(subject="{{ a }}", text_body="{{ b }} {{ recipient.id }}")
    with pytest.raises(MissingVariablesError) as exc:
        preview(version, {}, channels=["email"])
    assert exc.value.names == ["a", "b"]


def test_preview_gives_a_sample_recipient() -> None:
    version = _version(text_body="{{ recipient.id }} {{ recipient.locale }}")
    assert preview(version, {}, channels=["sms"])["sms"] == {"body": "preview-recipient en"}


@pytest.mark.parametrize("value", [
    "", "https://app.example.com/orders/1", "HTTP://x.test", "  https://x.test ", "/orders/1",
    "/", "{{ url }}", " {{ url }}/x", "//evil.test", "/a\\b", "javascript:alert(1)", "   ",
    "orders/1", "ftp://x.test", "000000", "\n/orders", "https:/x",
])
def test_the_schemas_action_url_pattern_is_the_services_rule(value: str) -> None:
    """The OpenAPI schema's pattern for `in_app_action_url` accepts what the template service
    accepts and nothing else (a schema-valid value is never refused with a 422)."""
    import re

    from apps.templates.api.serializers import ACTION_URL_PATTERN
    from apps.templates.rendering import is_safe_action_url

    expected = value == "" or is_safe_action_url(value, template=True)
    assert bool(re.search(ACTION_URL_PATTERN, value)) == expected
