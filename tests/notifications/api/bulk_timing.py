"""How long POST /api/v1/notifications/bulk takes to accept N single-recipient items.

Not a test: run it by hand against the test database (created or reused like `make test`):

    eval "$(bash scripts/services.sh up)"
    DJANGO_SETTINGS_MODULE=notifyhub.settings.test \
        .venv/bin/python -m tests.notifications.api.bulk_timing 10000

The request goes through the whole stack in-process (DRF parsing and validation, the bulk
service, commit, publishing to the broker); the client and its rows are deleted afterwards.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import django


def main(count: int) -> None:
    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True)

    from apps.audit.models import AuditLog
    from apps.clients.models import Client
    from apps.notifications.models import Delivery, Notification
    from apps.templates.models import Template, TemplateActiveVersion
    from tests.factories import ClientFactory, TemplateFactory, api_key_for

    tenant = ClientFactory(slug=f"bulk-timing-{uuid.uuid4().hex[:12]}")
    try:
        TemplateFactory(client=tenant, key="welcome")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
        items = [
            {"recipients": [{"id": f"user_{i}", "email": f"user_{i}@example.com"}],
             "template_id": "welcome", "variables": {"name": f"User {i}"}}
            for i in range(count)
        ]
        body = json.dumps({"notifications": items})
        started = time.perf_counter()
        response = api.post("/api/v1/notifications/bulk", body, content_type="application/json")
        elapsed = time.perf_counter() - started
        assert response.status_code == 202, response.content[:500]
        deliveries = Delivery.objects.filter(client=tenant).count()
        print(f"{count} items ({len(body) / 1e6:.1f} MB): HTTP {response.status_code} in "
              f"{elapsed:.2f} s ({count / elapsed:,.0f} items/s); {deliveries} deliveries committed")
    finally:
        Notification.objects.filter(client=tenant).delete()
        TemplateActiveVersion.objects.filter(template__client=tenant).delete()
        Template.objects.filter(client=tenant).update(active_version=None)
        Client.objects.filter(id=tenant.id).delete()
        AuditLog.objects.filter(client_id=tenant.id).delete()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
