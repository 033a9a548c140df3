"""How long the relay sweep takes (nothing in flight, a 10,000-delivery backlog within its
lease, 10,000 due at once), and how long a SIGKILLed worker's in-flight deliveries wait before
they are re-queued (default lease and sweep interval, a real worker and beat, the sandbox).

Not a test: run it by hand against the test database (created or reused like `make test`):

    eval "$(bash scripts/services.sh up)"
    DJANGO_SETTINGS_MODULE=notifyhub.settings.test \\
        .venv/bin/python -m tests.notifications.lease_timing [sweep] [kill]

The rows it creates are deleted afterwards.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import timedelta

import django


def _tenant() -> tuple[object, object]:
    from tests.factories import ClientFactory, TemplateFactory

    tenant = ClientFactory(slug=f"lease-timing-{uuid.uuid4().hex[:12]}")
    TemplateFactory(client=tenant, key="welcome")
    return tenant, tenant


def _cleanup(tenant: object) -> None:
    from apps.audit.models import AuditLog
    from apps.clients.models import Client
    from apps.notifications.models import Notification, RelayMarker
    from apps.templates.models import Template, TemplateActiveVersion

    # The test database is reused by `make test`: leave no broker marker behind (a test that
    # flushes the broker would take it for a broker that lost its data).
    RelayMarker.objects.all().delete()
    Notification.objects.filter(client=tenant).delete()
    TemplateActiveVersion.objects.filter(template__client=tenant).delete()
    Template.objects.filter(client=tenant).update(active_version=None)
    Client.objects.filter(id=tenant.id).delete()  # type: ignore[attr-defined]
    AuditLog.objects.filter(client_id=tenant.id).delete()  # type: ignore[attr-defined]


def _sweep_ms(runs: int = 5) -> float:
    from apps.notifications.relay import relay_sweep

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        relay_sweep()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def sweep_cost() -> None:
    import redis
    from django.conf import settings
    from django.utils import timezone

    from apps.notifications.models import Delivery
    from apps.notifications.relay import relay_sweep
    from apps.notifications.services import notification_send

    settings.ACCEPT_FANOUT_MIN_DELIVERIES = 10**9
    tenant, _ = _tenant()
    try:
        relay_sweep()  # the broker marker is in place
        print(f"sweep, nothing in flight: {_sweep_ms():.1f} ms (median of 5)", flush=True)
        notification_send(client=tenant, template_id="welcome", variables={"name": "x"},
                          recipients=[{"id": f"u{i}", "email": f"u{i}@example.com"}
                                      for i in range(10_000)])
        print(f"sweep, 10,000 deliveries in flight within their lease: {_sweep_ms():.1f} ms",
              flush=True)
        Delivery.objects.filter(client=tenant).update(
            status="sending", lease_until=timezone.now() - timedelta(seconds=1))
        started = time.perf_counter()
        first = relay_sweep()
        second = relay_sweep()
        elapsed = (time.perf_counter() - started) * 1000
        print(f"sweeps re-queuing 10,000 lost deliveries (RELAY_SWEEP_BATCH "
              f"{settings.RELAY_SWEEP_BATCH} each): {first.requeued} + {second.requeued} "
              f"in {elapsed:.0f} ms", flush=True)
    finally:
        _cleanup(tenant)
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def kill_to_requeue(total: int = 200) -> None:
    """A worker (defaults: 30 s lease, 5 s sweep) is SIGKILLed with calls in flight; the time
    until each in-flight delivery is re-queued by the next worker's sweeper."""
    import redis
    from django.conf import settings
    from django.db import connection

    from apps.notifications.models import Delivery, DeliveryEvent
    from apps.notifications.services import notification_send
    from tests.support.processes import WorkerProcess, database_url
    from tests.support.sandbox import SandboxProcess

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    with SandboxProcess() as sandbox:
        env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "notifyhub.settings.test",
            "DATABASE_URL": database_url(connection.settings_dict),
            "TEST_REDIS_URL": settings.CELERY_BROKER_URL,
            "SENDGRID_API_HOST": sandbox.url, "TEST_MODE_SENDGRID_API_HOST": sandbox.url,
            "SMTP_PORT": str(sandbox.smtp_port), "PYTHONUNBUFFERED": "1",
        }
        sandbox.control(latency_ms=60_000)  # every call hangs: all of them in flight
        tenant, _ = _tenant()
        doomed = WorkerProcess(env, name="doomed").start()
        survivor = None
        try:
            notification = notification_send(
                client=tenant, template_id="welcome", variables={"name": "x"},
                recipients=[{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(total)],
            ).notification
            deadline = time.monotonic() + 60
            while Delivery.objects.filter(notification=notification, status="sending").count() < 20:
                assert time.monotonic() < deadline, "nothing in flight"
                time.sleep(0.2)
            time.sleep(1)
            doomed.kill()
            killed = time.time()
            in_flight = list(Delivery.objects.filter(notification=notification, status="sending")
                             .values_list("id", "lease_until"))
            sandbox.control(latency_ms=0)
            survivor = WorkerProcess(env, beat=True, name="survivor").start()
            ids = [i for i, _ in in_flight]
            while True:
                requeued = dict(DeliveryEvent.objects.filter(delivery_id__in=ids, event="requeued")
                                .values_list("delivery_id", "created_at"))
                if len(requeued) == len(ids) or time.time() - killed > 180:
                    break
                time.sleep(0.5)
            after_kill = [requeued[i].timestamp() - killed for i in ids if i in requeued]
            after_lease = [(requeued[i] - lease).total_seconds() for i, lease in in_flight
                           if i in requeued]
            print(f"SIGKILL with {len(ids)} deliveries in flight (lease "
                  f"{settings.DELIVERY_LEASE_SECONDS} s, sweep every "
                  f"{settings.RELAY_SWEEP_INTERVAL_SECONDS:g} s): {len(after_kill)} re-queued "
                  f"{min(after_kill):.1f}-{max(after_kill):.1f} s after the kill, "
                  f"{min(after_lease):.1f}-{max(after_lease):.1f} s after their lease ended",
                  flush=True)
        finally:
            doomed.stop()
            if survivor is not None:
                survivor.stop()
            _cleanup(tenant)
            redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def main(what: list[str]) -> None:
    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True)
    if not what or "sweep" in what:
        sweep_cost()
    if not what or "kill" in what:
        kill_to_requeue()


if __name__ == "__main__":
    main(sys.argv[1:])
