"""A version whose source can never render in the sandbox is refused when it is created (API
422 `template_unsafe` naming the part, admin form error on the field), not discovered as
`render_error` on every delivery at send time. Legitimate sources are unaffected."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.exceptions import ApplicationError
from apps.templates.models import Template
from apps.templates.rendering import RenderError, render_part
from apps.templates.services import template_version_create
from tests.factories import TemplateFactory

from .test_templates_admin import change_url, template_form

pytestmark = pytest.mark.django_db

NEVER_RENDER = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ name.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ range.__self__ }}",
    "{{ recipient.__class__ }}",
    "{{ name['__class__'] }}",
    "{{ name|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format(name) }}",
    "{{ ('{0[__globals__]}'|attr('format'))(name) }}",
    "{{ self._TemplateReference__context }}",
    "{{ loop._after }}",
    "{% set x = [].append(1) %}{{ x }}",
    "{% set d = {} %}{{ d.update(a=1) }}",
    "{{ items.pop() }}",
    "Hi {% if vip %}{{ items.sort() }}{% endif %}",  # only in a branch: still never renders
]

STILL_FINE = [
    "{{ order._id }}",  # a JSON key with an underscore: reads the key
    "{% for k, v in data.items() %}{{ k }}={{ v }}{% endfor %}",
    "{{ '{0} of {1}'.format(a, b) }}",
    "{{ name|upper }} {{ items|join(', ') }} {{ loop_count }}",
    "{% set ns = namespace(n=0) %}{% for i in items %}{% set ns.n = ns.n + 1 %}{% endfor %}"
    "{{ ns.n }}",
    "{{ '__init__' }} {{ text|replace('__', '') }}",
]


@pytest.mark.parametrize("source", NEVER_RENDER)
def test_the_sandbox_refuses_each_source_at_render_time(source: str) -> None:
    """The premise: each would fail on every delivery."""
    with pytest.raises(RenderError):
        render_part("unsafe", "text", source, {
            "name": "Ada", "items": [1], "recipient": {"id": "x"}, "vip": True}, html=False)


@pytest.mark.parametrize("source", NEVER_RENDER)
def test_a_version_that_can_never_render_is_refused_when_created(source: str) -> None:
    template = TemplateFactory()

    with pytest.raises(ApplicationError) as exc:
        template_version_create(template=template, subject="ok", html_body=source)

    assert exc.value.status_code == 422
    assert exc.value.code == "template_unsafe"
    assert list(exc.value.fields) == ["html_body"]
    assert template.versions.count() == 1


@pytest.mark.parametrize("source", STILL_FINE)
def test_legitimate_sources_are_still_accepted(source: str) -> None:
    template = TemplateFactory()

    version = template_version_create(template=template, text_body=source)

    assert version.version == 2


def test_the_api_answers_422_naming_the_part_and_creates_nothing(api: Any) -> None:
    response = api.post("/api/v1/templates", {
        "key": "sneaky", "name": "Sneaky", "channels": ["email", "sms"],
        "version": {"subject": "ok", "sms_body": "{{ ''.__class__.__mro__ }}"}}, format="json")

    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "template_unsafe"
    assert list(response.json()["error"]["fields"]) == ["sms_body"]
    assert not Template.objects.filter(key="sneaky").exists()


def test_a_new_version_through_the_api_is_refused(api: Any, client_tenant: Any) -> None:
    template = TemplateFactory(client=client_tenant, key="plain")

    response = api.post("/api/v1/templates/plain/versions",
                        {"text_body": "{{ name|attr('__class__') }}"}, format="json")

    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "template_unsafe"
    assert template.versions.count() == 1


def test_the_admin_shows_the_refusal_on_the_field_and_saves_nothing(admin_client: Any) -> None:
    template = TemplateFactory()

    response = admin_client.post(change_url(template), template_form(
        template, text_body="{% set d = {} %}{{ d.update(a=1) }}"))

    assert response.status_code == 200
    assert "text_body" in response.context["adminform"].form.errors
    assert template.versions.count() == 1
