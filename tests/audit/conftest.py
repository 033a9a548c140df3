"""Audit test helpers: an API client whose key (and so its prefix) the test knows, and a way
to read the rows of one action.

`rows()` only sees rows of the clients this test created (and rows without a client): the test
database may be shared with other sessions whose end-to-end tests commit their own rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models import Q
from django.db.models.signals import post_save
from rest_framework.test import APIClient

from apps.audit.models import AuditLog
from apps.clients.models import ApiKey, Client
from apps.clients.services import api_key_create
from tests.factories import ClientFactory, RecipientFactory

_created_clients: set[Any] = set()


def _remember(sender: Any, instance: Client, created: bool, **_: Any) -> None:
    if created:
        _created_clients.add(instance.pk)


@pytest.fixture(autouse=True)
def _clients_of_this_test() -> Iterator[set[Any]]:
    _created_clients.clear()
    post_save.connect(_remember, sender=Client, dispatch_uid="audit-tests-clients")
    yield _created_clients
    post_save.disconnect(sender=Client, dispatch_uid="audit-tests-clients")


def rows(action: str | None = None, **filters: Any) -> list[AuditLog]:
    qs = AuditLog.objects.filter(Q(client_id__in=list(_created_clients)) | Q(client_id__isnull=True))
    if action:
        qs = qs.filter(action=action)
    return list(qs.filter(**filters).order_by("id"))


def mine(queryset: Any) -> Any:
    """`queryset` restricted to this test's clients."""
    return queryset.filter(client_id__in=list(_created_clients))


def new_client() -> Client:
    """A client whose slug no other session's committed rows can already hold (the shared
    test database may have `client-0` from a concurrent end-to-end run)."""
    slug = f"audit-{uuid.uuid4().hex[:16]}"
    return ClientFactory(slug=slug, name=slug)


@pytest.fixture
def client_tenant(db: None) -> Client:
    return new_client()


@pytest.fixture
def key(client_tenant: Any) -> ApiKey:
    return api_key_create(client=client_tenant, name="ci", raw_key="nh_" + "k" * 40)[0]


@pytest.fixture
def keyed_api(key: ApiKey) -> APIClient:
    """An API client using `key` (prefix `nh_kkkkkkkkk`), with a user agent."""
    api_client = APIClient(HTTP_USER_AGENT="orders-service/1.0")
    api_client.credentials(HTTP_AUTHORIZATION="Bearer nh_" + "k" * 40)
    return api_client


@pytest.fixture
def ada(client_tenant: Any) -> Any:
    return RecipientFactory(client=client_tenant, external_id="ada", phone="+14155550100")
