"""Seconds to 202 for one 50,000-recipient send and one 50,000-item bulk request, accepted as
a job (fan-out, the default) or entirely in the request (the path before it), and how long the
job's expansion takes in-process (first slice, all slices).

Not a test: run it by hand against the test database (created or reused like `make test`):

    eval "$(bash scripts/services.sh up)"
    DJANGO_SETTINGS_MODULE=notifyhub.settings.test \
        .venv/bin/python -m tests.notifications.fanout_timing 50000 [--in-request]

The request goes through the whole stack in-process (DRF parsing, validation, the accept,
commit, publishing); the tenant and its rows are deleted afterwards. Sending is the bench's.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import django


def main(count: int, in_request: bool) -> None:
    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True)
    settings.MAX_RECIPIENTS_PER_REQUEST = max(settings.MAX_RECIPIENTS_PER_REQUEST, count)
    if in_request:
        settings.ACCEPT_FANOUT_MIN_DELIVERIES = 10**9

    from apps.audit.models import AuditLog
    from apps.clients.models import Client
    from apps.notifications.fanout import accept_job_expand
    from apps.notifications.models import AcceptJob, Delivery, Notification
    from apps.templates.models import Template, TemplateActiveVersion
    from tests.factories import ClientFactory, TemplateFactory, api_key_for

    shapes = {
        "send": ("/api/v1/notifications", {
            "recipients": [{"id": f"user_{i}", "email": f"user_{i}@example.com"}
                           for i in range(count)],
            "template_id": "welcome", "variables": {"name": "User"}}),
        "bulk": ("/api/v1/notifications/bulk", {"notifications": [
            {"recipients": [{"id": f"user_{i}", "email": f"user_{i}@example.com"}],
             "template_id": "welcome", "variables": {"name": f"User {i}"}}
            for i in range(count)]}),
    }
    for name, (url, payload) in shapes.items():
        tenant = ClientFactory(slug=f"fanout-timing-{uuid.uuid4().hex[:12]}")
        try:
            TemplateFactory(client=tenant, key="welcome")
            api = APIClient()
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(tenant)}")
            body = json.dumps(payload)
            started = time.perf_counter()
            response = api.post(url, body, content_type="application/json")
            elapsed = time.perf_counter() - started
            assert response.status_code == 202, response.content[:500]
            line = (f"{name}: {count} recipients ({len(body) / 1e6:.1f} MB): 202 in "
                    f"{elapsed:.2f} s; {Delivery.objects.filter(client=tenant).count()} "
                    "deliveries at the 202")
            job = AcceptJob.objects.filter(client=tenant).first()
            if job is not None:
                started = time.perf_counter()
                accept_job_expand(job_id=job.id)
                first = time.perf_counter() - started
                while accept_job_expand(job_id=job.id).expanded:
                    pass
                total = time.perf_counter() - started
                line += (f"; expansion in-process: first slice {first:.2f} s, all "
                         f"{job.slices} slices {total:.1f} s, "
                         f"{Delivery.objects.filter(client=tenant).count()} deliveries")
            print(line, flush=True)
        finally:
            Notification.objects.filter(client=tenant).delete()
            TemplateActiveVersion.objects.filter(template__client=tenant).delete()
            Template.objects.filter(client=tenant).update(active_version=None)
            Client.objects.filter(id=tenant.id).delete()
            AuditLog.objects.filter(client_id=tenant.id).delete()  # the test database's rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000, "--in-request" in sys.argv)
