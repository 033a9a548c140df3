"""factory-boy factories for the models tests build on."""

from __future__ import annotations

from typing import Any

import factory

from apps.clients.models import Client
from apps.clients.services import api_key_create
from apps.recipients.models import Recipient
from apps.templates.models import Template
from apps.templates.services import template_version_create


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    name = factory.Sequence(lambda n: f"Client {n}")
    slug = factory.Sequence(lambda n: f"client-{n}")


class RecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recipient

    client = factory.SubFactory(ClientFactory)
    external_id = factory.Sequence(lambda n: f"user_{n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    locale = "en"
    timezone = "UTC"


class TemplateFactory(factory.django.DjangoModelFactory):
    """A template with one published email version (override the content with version__*)."""

    class Meta:
        model = Template
        skip_postgeneration_save = True

    client = factory.SubFactory(ClientFactory)
    key = factory.Sequence(lambda n: f"template_{n}")
    name = factory.LazyAttribute(lambda o: o.key.replace("_", " ").title())
    channels = factory.LazyFunction(lambda: ["email"])
    category = "transactional"

    @factory.post_generation
    def version(obj: Template, create: bool, extracted: Any, **kwargs: Any) -> None:
        if not create or extracted is False:
            return
        content = {
            "subject": "Hello {{ name }}",
            "text_body": "Hi {{ name }}, this is {{ recipient.id }}.",
            "html_body": "<p>Hi {{ name }}</p>",
            **kwargs,
        }
        template_version_create(template=obj, **content)
        obj.refresh_from_db()


def api_key_for(client: Client) -> str:
    return api_key_create(client=client, name="test")[1]
