"""The Python client against a real NotifyHub (pytest-django's live server, real PostgreSQL
and Redis): what a service team sees when it integrates with the five-line quick start."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from apps.clients.models import KeyMode
from apps.clients.services import api_key_create
from apps.notifications.models import Notification
from tests.factories import ClientFactory, TemplateFactory, api_key_for
from tests.support.pyclient import CLIENT_ROOT, load_client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

nh = load_client()

ADA = {"id": "ada", "email": "ada@example.com"}


@pytest.fixture
def tenant(db: None) -> Any:
    tenant = ClientFactory()
    TemplateFactory(client=tenant, key="welcome")
    return tenant


@pytest.fixture
def client(live_server: Any, tenant: Any) -> Any:
    with nh.Client(api_key=api_key_for(tenant), base_url=live_server.url) as client:
        yield client


def quick_start(readme: str) -> str:
    """The README's first Python block."""
    match = re.search(r"```python\n(.*?)```", readme, re.S)
    assert match
    return match.group(1)


def test_the_readme_quick_start_works_from_the_installed_package(
        live_server: Any, tenant: Any, tmp_path: Path) -> None:
    """`pip install ./clients/python` (built offline from this checkout), then the README's
    five lines, in a process where `notifyhub` is the client and nothing else."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(tmp_path / "site"), str(CLIENT_ROOT)],
                   check=True, capture_output=True, timeout=120)
    assert (tmp_path / "site" / "notifyhub" / "py.typed").exists()
    code = quick_start((CLIENT_ROOT / "README.md").read_text())
    assert len(code.strip().splitlines()) == 5
    code = code.replace("nh_your_api_key", api_key_for(tenant)).replace(
        "http://127.0.0.1:8000", live_server.url)

    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                           f"{str(tmp_path / 'site')!r})\n{code}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ""})

    assert done.returncode == 0, done.stderr
    notification_id, status = done.stdout.split()
    assert Notification.objects.get(id=notification_id, client=tenant).status == status


def test_a_send_retried_with_its_key_is_accepted_once(client: Any, tenant: Any) -> None:
    first = client.notifications.send(recipients=[ADA], template_id="welcome",
                                      variables={"name": "Ada"}, idempotency_key="signup-ada")
    again = client.notifications.send(recipients=[ADA], template_id="welcome",
                                      variables={"name": "Ada"}, idempotency_key="signup-ada")

    assert first.id == again.id and len(first.deliveries) == 1
    assert Notification.objects.filter(client=tenant).count() == 1
    assert client.notifications.get(first.id).id == first.id
    assert client.notifications.status(first.id).id == first.id


def test_list_iterates_over_every_page(client: Any, tenant: Any) -> None:
    sent = {client.notifications.send(recipients=[{**ADA, "id": f"user_{n}"}],
                                      template_id="welcome", variables={"name": "Ada"}).id
            for n in range(5)}

    listed = [n.id for n in client.notifications.list(page_size=2)]

    assert sorted(listed) == sorted(sent)
    deliveries = list(client.notifications.deliveries(next(iter(sent)), page_size=1))
    assert len(deliveries) == 1 and deliveries[0].channel == "email"


def test_refusals_are_typed_errors_with_the_apis_code_and_fields(
        client: Any, live_server: Any, tenant: Any) -> None:
    with pytest.raises(nh.BadRequestError) as invalid:
        client.notifications.send(recipients=[{"id": "u1", "email": "not-an-email"}],
                                  template_id="welcome")
    assert invalid.value.code == "invalid" and "recipients[0].email" in invalid.value.fields
    assert invalid.value.request_id

    with pytest.raises(nh.NotFoundError) as missing:
        client.notifications.get(str(uuid.uuid4()))
    assert missing.value.code == "not_found"

    with pytest.raises(nh.UnprocessableError) as unknown:
        client.notifications.send(recipients=[ADA], template_id="no_such_template")
    assert unknown.value.code == "unknown_template"

    _, read_only = api_key_create(client=tenant, name="reader", scopes=["read"])
    with pytest.raises(nh.PermissionDeniedError) as scope:
        nh.Client(api_key=read_only, base_url=live_server.url).notifications.send(
            recipients=[ADA], template_id="welcome")
    assert scope.value.code == "insufficient_scope" and scope.value.fields == {"scope": ["send"]}

    with pytest.raises(nh.AuthenticationError) as bad_key:
        list(nh.Client(api_key="nh_not_a_key", base_url=live_server.url).notifications.list())
    assert bad_key.value.status == 401


def test_a_test_key_sees_only_test_notifications(client: Any, live_server: Any,
                                                 tenant: Any) -> None:
    client.notifications.send(recipients=[ADA], template_id="welcome", variables={"name": "A"})
    _, test_key = api_key_create(client=tenant, name="ci", mode=KeyMode.TEST)
    test_client = nh.Client(api_key=test_key, base_url=live_server.url)

    assert test_client.test_mode and not client.test_mode
    assert list(test_client.notifications.list()) == []
    assert len(list(client.notifications.list())) == 1


def test_the_async_client_sends_and_pages(live_server: Any, tenant: Any) -> None:
    key = api_key_for(tenant)

    async def main() -> tuple[Any, list[str]]:
        async with nh.AsyncClient(api_key=key, base_url=live_server.url) as client:
            sent = await asyncio.gather(*(
                client.notifications.send(recipients=[{**ADA, "id": f"u{n}"}],
                                          template_id="welcome", variables={"name": "A"})
                for n in range(3)))
            listed = [n.id async for n in client.notifications.list(page_size=2)]
            return sent, listed

    sent, listed = asyncio.run(main())

    assert sorted(n.id for n in sent) == sorted(listed)


def test_templates_and_health_through_the_client(client: Any) -> None:
    assert client.system.health().status == "ok"
    assert [t.key for t in client.templates.list()] == ["welcome"]
    assert client.templates.get("welcome").key == "welcome"
