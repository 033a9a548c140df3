"""JSON typed into the admin (a template's sample variables and push data, a recipient's
attributes) that PostgreSQL cannot store is a form error on its field, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from apps.recipients.models import Recipient
from tests.factories import RecipientFactory, TemplateFactory
from tests.templates.test_templates_admin import change_url, template_form

pytestmark = pytest.mark.django_db

BAD_JSON = ['{"a": "\\ud800"}', '{"a\\u0000": 1}', '{"a": NaN}', "[" * 5000 + "]" * 5000]


@pytest.mark.parametrize("value", BAD_JSON)
@pytest.mark.parametrize("field", ["sample_variables", "push_data"])
def test_template_admin_json_fields(admin_client: Any, field: str, value: str) -> None:
    admin_client.raise_request_exception = False
    template = TemplateFactory()

    response = admin_client.post(change_url(template),
                                 template_form(template, subject="x", **{field: value}))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert template.versions.count() == 1


@pytest.mark.parametrize("value", BAD_JSON)
def test_recipient_admin_attributes(admin_client: Any, value: str) -> None:
    admin_client.raise_request_exception = False
    recipient = RecipientFactory(attributes={"plan": "pro"})
    url = f"/admin/recipients/recipient/{recipient.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}

    response = admin_client.post(url, {**data, "attributes": value})

    assert response.status_code == 200, response.content[:300]
    assert "attributes" in response.context["adminform"].form.errors
    assert Recipient.objects.get(pk=recipient.pk).attributes == {"plan": "pro"}
