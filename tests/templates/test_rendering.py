from __future__ import annotations

from typing import Any

import pytest

from apps.core.exceptions import ApplicationError
from apps.templates.rendering import RenderError, render_part, template_variables
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
