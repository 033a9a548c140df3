"""`python -m bench.micro N [--profile FILE] [--cprofile] [--queries]`: the API's own CPU cost
(`--bulk N`: of one N-item bulk request; `--reads`: of the read endpoints; `--receipts K`: of
N signed SendGrid callbacks of K events each) of one
single-recipient send (POST /api/v1/notifications, one new inline email recipient),
in process through Django's WSGI handler with DEBUG=0 and the local settings: no HTTP server,
no load generator, so it measures our code alone. Uses its own database (notifyhub_micro on
the server of DATABASE_URL, created and migrated if missing) and Redis DB 5.

Under `valgrind --tool=callgrind`, the difference between two runs (N=120 and N=20) divided by
100 is the instructions per send, which other load on the machine does not change
(docs/operations.md, "Second round of issue 8's work"). `--profile` needs pyinstrument
(`.venv/bin/pip install pyinstrument`; not a project requirement)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # imported for real only after django.setup()
    from django.test import Client as HttpClient

    from apps.clients.models import Client


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")
    os.environ["DEBUG"] = "0"
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    os.environ["DATABASE_URL"] = server + "/notifyhub_micro"
    os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/5"
    os.environ.setdefault("API_THROTTLE_RATE", "1000000/min")
    import psycopg

    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'notifyhub_micro'").fetchone():
            conn.execute("CREATE DATABASE notifyhub_micro")
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client as HttpClient
    from django.test.utils import CaptureQueriesContext

    # Booted as a gunicorn worker boots: notifyhub/wsgi.py sets up traces (on only with an
    # OTEL_* exporter configured: docs/operations.md, "Traces"), Django, and the warm-up of
    # apps/core/boot.py (the URLconf and providers loaded, what the boot holds frozen).
    import notifyhub.wsgi  # noqa: F401
    from apps.clients.models import Client
    from apps.templates.models import Template
    from tests.factories import ClientFactory, TemplateFactory, api_key_for

    call_command("migrate", verbosity=0)
    tag = uuid.uuid4().hex[:6]
    # factory_boy's call returns the model instance (its stubs say the factory).
    client = cast(Client, ClientFactory(slug=f"micro-{tag}"))
    template = cast(Template, TemplateFactory(client=client))
    http = HttpClient()
    headers = {"Authorization": f"Bearer {api_key_for(client)}"}

    def send(i: int) -> None:
        body = json.dumps({"recipients": [{"id": f"m{tag}{i}", "email": f"m{tag}{i}@example.com"}],
                           "template_id": template.key, "variables": {"name": "x"}})
        response = http.post("/api/v1/notifications", body, content_type="application/json",
                             headers=headers)
        assert response.status_code == 202, (response.status_code, response.content[:400])

    if "--reads" in sys.argv:
        _reads(http, headers, client, template.key, tag)
        return
    if "--bulk" in sys.argv:
        _bulk(http, headers, template.key, tag, int(sys.argv[sys.argv.index("--bulk") + 1]))
        return
    if "--receipts" in sys.argv:
        _receipts(http, send, client, tag, int(sys.argv[sys.argv.index("--receipts") + 1]),
                  int(sys.argv[1]))
        return
    n = int(sys.argv[1])
    for i in range(50):  # warm: caches, the API key, prepared query texts
        send(-i - 1)
    if "--queries" in sys.argv:
        with CaptureQueriesContext(connection) as queries:
            send(10**6)
        for query in queries.captured_queries:
            print(query["sql"][:300])
    profiler = None
    if "--profile" in sys.argv:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    pg = _backend_cpu()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        send(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pg = _backend_cpu() - pg
    if profiler is not None:
        profiler.stop()
        with open(sys.argv[sys.argv.index("--profile") + 1], "w") as out:
            out.write(profiler.output_text(unicode=False, color=False))
    if "--cprofile" in sys.argv:
        import cProfile
        import pstats

        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for i in range(n, 2 * n):
            send(i)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumtime").print_stats(r"apps/", 60)
    print(f"cpu {cpu / n * 1000:.2f} ms/send, wall {wall / n * 1000:.2f} ms/send over {n}; "
          f"PostgreSQL backend {pg / n * 1000:.2f} ms/send")


def _backend_cpu() -> float:
    """CPU seconds of this connection's PostgreSQL backend so far (NaN when the server is not
    on this machine): its share of a send, beside the API's."""
    from pathlib import Path

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    try:
        fields = Path(f"/proc/{backend}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reads(http: HttpClient, headers: Mapping[str, str], client: Client, template_key: str,
           tag: str) -> None:
    """`--reads`: CPU per GET of the list (status and channel filters, page of 50), a detail,
    a status and a deliveries page of a 50-recipient notification, over 60 such
    notifications: min of 3 rounds of 50 GETs each."""
    from django.db import transaction

    from apps.notifications.bulk import SendRequest, notifications_accept

    with transaction.atomic():
        accepted = notifications_accept(client=client, requests=[
            SendRequest(recipients=[{"id": f"r{tag}{i}-{j}", "email": f"r{i}-{j}@example.com"}
                                    for j in range(50)],
                        template_id=template_key, variables={"name": f"x{i}"}, metadata={"k": i})
            for i in range(60)])
    nid = accepted.notifications[-1].id
    for name, url in [("list", "/api/v1/notifications?status=pending&channel=email"),
                      ("detail", f"/api/v1/notifications/{nid}"),
                      ("status", f"/api/v1/notifications/{nid}/status"),
                      ("deliveries", f"/api/v1/notifications/{nid}/deliveries")]:
        response = http.get(url, headers=headers)
        assert response.status_code == 200, (url, response.content[:300])
        best = float("inf")
        for _ in range(3):
            cpu = time.process_time()
            for _ in range(50):
                http.get(url, headers=headers)
            best = min(best, (time.process_time() - cpu) / 50)
        print(f"{name}: {best * 1000:.2f} ms CPU per GET")


def _bulk(http: HttpClient, headers: Mapping[str, str], template_key: str, tag: str,
          count: int) -> None:
    """`--bulk N`: one POST /api/v1/notifications/bulk of N single-recipient items (new inline
    email recipients), as the bench's fan-out phase sends it: CPU and wall seconds to the 202,
    after one small warm-up bulk. With `--cprofile`, the measured request under cProfile."""

    def bulk(prefix: str, n: int) -> float:
        items = [{"recipients": [{"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"}],
                  "template_id": template_key, "variables": {"name": "x"}} for i in range(n)]
        body = json.dumps({"notifications": items})
        wall = time.perf_counter()
        response = http.post("/api/v1/notifications/bulk", body,
                             content_type="application/json", headers=headers)
        assert response.status_code == 202, (response.status_code, response.content[:400])
        return time.perf_counter() - wall

    bulk(f"w{tag}", 200)
    profile = None
    if "--cprofile" in sys.argv:
        import cProfile

        profile = cProfile.Profile(time.process_time)
        profile.enable()
    sampler = None
    if "--profile" in sys.argv:
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.001)
        sampler.start()
    cpu = time.process_time()
    wall = bulk(f"b{tag}", count)
    cpu = time.process_time() - cpu
    if sampler is not None:
        sampler.stop()
        with open(sys.argv[sys.argv.index("--profile") + 1], "w") as out:
            out.write(sampler.output_text(unicode=False, color=False, show_all=False))
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile).sort_stats("cumtime").print_stats(60)
        pstats.Stats(profile).sort_stats("tottime").print_stats(40)
    print(f"bulk of {count}: cpu {cpu:.2f} s, wall {wall:.2f} s (to the 202)")


def _receipts(http: HttpClient, send: Any, client: Client, tag: str, per_callback: int,
              callbacks: int) -> None:
    """`N --receipts K`: N signed SendGrid event callbacks of K `delivered` events each
    (POST /api/v1/webhooks/sendgrid, as the sandbox posts them) for deliveries recorded as
    sent: CPU per callback and per event, after a few warm-up callbacks."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from apps.notifications.dispatch import deliveries_claim, delivery_record_outcome
    from apps.notifications.models import Delivery
    from apps.notifications.providers.base import SendResult

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"] = public  # read per request (providers/conf.py)
    warm = 5
    total = (callbacks + warm) * per_callback
    for i in range(total):
        send(10**7 + i)
    ids = [str(i) for i in Delivery.objects.filter(client=client, status__in=["pending", "queued"])
           .order_by("created_at").values_list("id", flat=True)[:total]]
    for delivery_id, attempt in deliveries_claim(delivery_ids=ids).items():
        delivery_record_outcome(delivery_id=delivery_id, attempt=attempt,
                                result=SendResult.sent("sendgrid", f"msg-{delivery_id}"))
    bodies = []
    for start in range(0, len(ids), per_callback):
        events = [{"email": "x@example.com", "timestamp": int(time.time()), "event": "delivered",
                   "sg_event_id": f"ev-{tag}-{i}", "sg_message_id": f"msg-{i}.filter0001.1",
                   "notifyhub_delivery_id": i} for i in ids[start:start + per_callback]]
        body = json.dumps(events)
        ts = str(int(time.time()))
        signature = base64.b64encode(
            key.sign((ts + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
        bodies.append((body, {"X-Twilio-Email-Event-Webhook-Signature": signature,
                              "X-Twilio-Email-Event-Webhook-Timestamp": ts}))

    def post(body: str, headers: dict[str, str]) -> None:
        response = http.post("/api/v1/webhooks/sendgrid", body, content_type="application/json",
                             headers=headers)
        assert response.status_code < 300, (response.status_code, response.content[:400])

    for body, headers in bodies[:warm]:
        post(body, headers)
    profile = None
    if "--cprofile" in sys.argv:
        import cProfile

        profile = cProfile.Profile(time.process_time)
        profile.enable()
    pg = _backend_cpu()
    cpu = time.process_time()
    for body, headers in bodies[warm:]:
        post(body, headers)
    cpu = time.process_time() - cpu
    pg = _backend_cpu() - pg
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile).sort_stats("cumtime").print_stats(70)
    done = Delivery.objects.filter(id__in=ids, status="delivered").count()
    print(f"receipts: {callbacks} callbacks of {per_callback} events: cpu {1000 * cpu / callbacks:.2f} ms"
          f" per callback ({1000 * cpu / (callbacks * per_callback):.3f} ms per event); PostgreSQL"
          f" backend {1000 * pg / callbacks:.2f} ms per callback; {done} of {len(ids)} delivered")


if __name__ == "__main__":
    main()
