"""The benchmark's phases, in order, with every child process stopped on the way out.

setup → accept over HTTP → accept in-process (real vs naive) → optimized end to end →
naive end to end. Between the end-to-end phases the notification tables are emptied, the
bench Redis DB is flushed, the sandbox is reset and a fresh worker is started.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from .environment import Targets, flush_redis, recreate_database, write_signing_key
from .processes import (
    CpuSnapshot,
    ManagedProcess,
    cpu_breakdown,
    log,
    start_gunicorn,
    start_worker,
    worker_command,
)

ACCEPT_RECIPIENTS = 1000
SEND_CHUNK = 1000  # recipients per POST in the end-to-end phases
GUNICORN_WORKERS = 2
WORKER_CONCURRENCY = 2
STARTUP_TIMEOUT = 60.0
TEMPLATE_KEY = "bench_welcome"
VARIABLES = {"name": "Bench"}
# The sandbox's own defaults, written out so the report states them.
SANDBOX_CALLBACK_INTERVAL_MS = 200
SANDBOX_DELIVERED_DELAY_MS = 100
# A phase is flagged when other processes took more than this share of the machine's CPU.
NOISE_SHARE = 0.15


@dataclass(frozen=True)
class Options:
    deliveries: int
    accept_runs: int
    latency_ms: int
    timeout: float
    skip_naive: bool


class Bench:
    def __init__(self, options: Options, targets: Targets, workdir: Path) -> None:
        self.options = options
        self.targets = targets
        self.workdir = workdir
        self.sandbox: Any = None  # tests.support.sandbox.SandboxProcess
        self.gunicorn: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.child_env: dict[str, str] = {}
        self.server_version = ""
        self.api: Any = None  # measure.HttpApi
        self.client: Any = None  # apps.clients.models.Client

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stops every child, also after Ctrl-C (a second Ctrl-C cannot cut this short)."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._stop_worker()
            if self.gunicorn is not None:
                log("stopping gunicorn")
                self.gunicorn.stop()
                self.gunicorn = None
            if self.sandbox is not None:
                log("stopping the sandbox")
                self.sandbox.stop()
                self.sandbox = None
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_worker(self) -> None:
        if self.worker is not None:
            log(f"stopping {self.worker.name}")
            self.worker.stop()
            self.worker = None

    # -- setup --------------------------------------------------------------------------

    def setup(self) -> None:
        targets = self.targets
        log(f"recreating database {targets.db_name!r} and flushing Redis {targets.redis_url}")
        self.server_version = recreate_database(targets)
        flush_redis(targets)

        key_file, public_key = write_signing_key(self.workdir)
        from tests.support.sandbox import SandboxProcess, free_port

        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        web_port, sandbox_port, smtp_port = sorted(ports)
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        os.environ.update({
            **targets.child_env(),
            "DEBUG": "0",
            "SENDGRID_API_HOST": sandbox_url,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
            # Only email through SendGrid is measured; the other providers point at this run's
            # sandbox too, never at a `make run` on the default ports.
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SANDBOX_SMTP_PORT": str(smtp_port),
            "TWILIO_API_BASE_URL": sandbox_url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
            "PYTHONUNBUFFERED": "1",
        })
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")
        self.child_env = dict(os.environ)

        self._django_setup()
        from django.core.management import call_command

        log("migrating")
        call_command("migrate", interactive=False, verbosity=0, stdout=sys.stderr)
        raw_key = self._create_tenant()

        log("starting the provider sandbox")
        self.sandbox = SandboxProcess(
            self.child_env,
            port=sandbox_port,
            startup_timeout=STARTUP_TIMEOUT,
            SANDBOX_SENDGRID_CALLBACK_URL=f"http://127.0.0.1:{web_port}/api/v1/webhooks/sendgrid",
            SANDBOX_SENDGRID_SIGNING_KEY_FILE=str(key_file),
            SANDBOX_CALLBACK_INTERVAL_MS=str(SANDBOX_CALLBACK_INTERVAL_MS),
            SANDBOX_DELIVERED_DELAY_MS=str(SANDBOX_DELIVERED_DELAY_MS),
            SANDBOX_LOG_LEVEL="WARNING",
        ).start()
        log(f"starting gunicorn on 127.0.0.1:{web_port} ({GUNICORN_WORKERS} workers)")
        self.gunicorn = start_gunicorn(
            self.child_env, port=web_port, workers=GUNICORN_WORKERS, timeout=STARTUP_TIMEOUT
        )
        from .measure import HttpApi

        self.api = HttpApi("127.0.0.1", web_port, raw_key)

    def _django_setup(self) -> None:
        import django
        from django.conf import settings

        django.setup()
        # The settings must read our URLs (notifyhub.settings.test, for one, pins its broker).
        actual = {
            "database": settings.DATABASES["default"]["NAME"],
            "broker": settings.CELERY_BROKER_URL,
            "cache": settings.CACHES["default"]["LOCATION"],
        }
        wanted = {
            "database": self.targets.db_name,
            "broker": self.targets.redis_url,
            "cache": self.targets.redis_url,
        }
        if actual != wanted:
            from .environment import BenchSetupError

            raise BenchSetupError(
                f"settings {os.environ['DJANGO_SETTINGS_MODULE']} do not use the bench database/"
                f"Redis ({actual} != {wanted}); run with DJANGO_SETTINGS_MODULE=notifyhub.settings.local"
            )
        import celery_app  # noqa: F401 - makes the project's Celery app the current one

    def _create_tenant(self) -> str:
        from apps.clients.models import Client
        from apps.clients.services import api_key_create
        from apps.templates.services import template_create, template_version_create

        self.client = Client.objects.create(name="Bench", slug="bench")
        _, raw_key = api_key_create(client=self.client, name="bench")
        template = template_create(
            client=self.client, key=TEMPLATE_KEY, name="Bench welcome", channels=["email"]
        )
        template_version_create(
            template=template,
            subject="Hello {{ name }}",
            text_body="Hi {{ name }}, this is {{ recipient.id }}.",
            html_body="<p>Hi {{ name }}, this is <b>{{ recipient.id }}</b>.</p>",
        )
        return raw_key

    # -- phases -------------------------------------------------------------------------

    def accept_http(self) -> dict[str, Any]:
        from .measure import recipients_for, send_body, summary_ms

        body = send_body(recipients_for("b", ACCEPT_RECIPIENTS), TEMPLATE_KEY, VARIABLES)
        log(f"accept over HTTP: warm-up + {self.options.accept_runs} run(s) of "
            f"{ACCEPT_RECIPIENTS} recipients")
        response, warm = self.api.post_notification(body)
        if len(response["deliveries"]) != ACCEPT_RECIPIENTS:
            raise RuntimeError(f"expected {ACCEPT_RECIPIENTS} deliveries, got {len(response['deliveries'])}")
        times = []
        for _ in range(self.options.accept_runs):
            _, elapsed = self.api.post_notification(body)
            times.append(elapsed)
        result = summary_ms(times)
        result["warm_up"] = round(warm * 1000, 1)
        result["deliveries_per_second_at_median"] = round(ACCEPT_RECIPIENTS / (result["median"] / 1000), 1)
        log(f"accept over HTTP: median {result['median']} ms")
        return result

    def accept_in_process(self) -> dict[str, Any]:
        """The real `notification_send` vs `naive_accept`, both in this process, both for the
        recipients the HTTP phase already created, each after a 10-recipient warm-up."""
        from apps.notifications.services import notification_send

        from .measure import recipients_for, timed

        recipients = recipients_for("b", ACCEPT_RECIPIENTS)

        def optimized(items: list[dict[str, str]]) -> Any:
            return notification_send(client=self.client, recipients=list(items), template_id=TEMPLATE_KEY,
                                     variables=dict(VARIABLES), priority="normal")

        optimized(recipients[:10])
        _, opt_s = timed(lambda: optimized(recipients))
        result: dict[str, Any] = {"recipients": ACCEPT_RECIPIENTS, "optimized_ms": round(opt_s * 1000, 1),
                                  "naive_ms": None}
        if not self.options.skip_naive:
            from .naive import naive_accept

            def naive(items: list[dict[str, str]]) -> Any:
                return naive_accept(client=self.client, recipients=items, template_id=TEMPLATE_KEY,
                                    variables=dict(VARIABLES), priority="normal")

            naive(recipients[:10])
            _, naive_s = timed(lambda: naive(recipients))
            result["naive_ms"] = round(naive_s * 1000, 1)
        log(f"accept in-process: optimized {result['optimized_ms']} ms, naive {result['naive_ms']} ms")
        return result

    def reset_between_phases(self) -> None:
        from django.db import connection

        self._stop_worker()
        # CASCADE: whatever references deliveries (suppressions …) goes too; it is bench data.
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE notifications_deliveryevent, notifications_delivery, "
                "notifications_notification CASCADE"
            )
        flush_redis(self.targets)
        self.sandbox.reset()
        if self.options.latency_ms:
            self.sandbox.control(latency_ms=self.options.latency_ms)

    def end_to_end(self, mode: str) -> dict[str, Any]:
        from .measure import (
            HttpApi,
            chunks,
            db_activity,
            delta,
            e2e_result,
            recipients_for,
            send_body,
            utc_from_epoch,
            wait_for_deliveries,
        )

        options = self.options
        self.reset_between_phases()
        log(f"{mode}: starting a fresh worker (-c {WORKER_CONCURRENCY})")
        self.worker = start_worker(self.child_env, concurrency=WORKER_CONCURRENCY,
                                   name=f"bench-{mode}", timeout=STARTUP_TIMEOUT)
        recipients = recipients_for("o" if mode == "optimized" else "n", options.deliveries)
        batches = chunks(recipients, SEND_CHUNK)
        bodies = [send_body(batch, TEMPLATE_KEY, VARIABLES) for batch in batches]

        api: HttpApi = self.api
        db_before = db_activity(self.targets.db_name)
        cpu_before = CpuSnapshot.take()
        log(f"{mode}: accepting {options.deliveries} deliveries in {len(batches)} send(s)")
        started_at = utc_from_epoch(time.time())
        t0 = time.monotonic()
        deadline = t0 + options.timeout
        notification_ids: list[str] = []
        if mode == "optimized":
            for body in bodies:
                response, _ = api.post_notification(body)
                notification_ids.append(response["id"])
        else:
            from .naive import naive_accept

            for batch in batches:
                notification = naive_accept(client=self.client, recipients=batch, template_id=TEMPLATE_KEY,
                                            variables=dict(VARIABLES), priority="normal")
                notification_ids.append(str(notification.id))
        accept_seconds = time.monotonic() - t0

        def context() -> str:
            worker_log = self.worker.log_tail() if self.worker else ""
            gunicorn_log = self.gunicorn.log_tail(15) if self.gunicorn else ""
            return (f"sandbox stats: {json.dumps(self.sandbox.stats().get('callbacks'))}\n"
                    f"--- worker log ---\n{worker_log}\n--- gunicorn log ---\n{gunicorn_log}")

        sent_seen, final_seen, polls = wait_for_deliveries(
            label=mode, notification_ids=notification_ids, expected=options.deliveries,
            deadline=deadline, context=context,
        )
        cpu_after = CpuSnapshot.take()
        time.sleep(1.1)  # let PostgreSQL publish the backends' statistics
        db_after = db_activity(self.targets.db_name)
        result = e2e_result(
            notification_ids=notification_ids, expected=options.deliveries, started_at=started_at,
            accept_seconds=accept_seconds, sent_seen=sent_seen, final_seen=final_seen, t0=t0,
        )
        assert self.gunicorn is not None and self.worker is not None
        result["cpu_seconds"] = cpu_breakdown(
            cpu_before, cpu_after,
            {"worker": self.worker.pid, "gunicorn": self.gunicorn.pid,
             "sandbox": self.sandbox.proc.pid if self.sandbox.proc else None},
            {"bench_process": os.getpid()},
            db_name=self.targets.db_name,
        )
        result["db"] = {**delta(db_after, db_before), "bench_progress_polls": polls}
        stats = self.sandbox.stats()
        result["sandbox"] = {"accepted": stats.get("accepted"), "rejected": stats.get("rejected"),
                             "callbacks": stats.get("callbacks")}
        log(f"{mode}: {result['sent_per_second']} sent/s, {result['delivered_per_second']} delivered/s")
        self._stop_worker()
        return result

    # -- report -------------------------------------------------------------------------

    def machine(self) -> dict[str, Any]:
        from django.conf import settings

        return {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "postgresql": self.server_version,
            "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE"),
            "settings": {
                "DISPATCH_CHUNK_SIZE": settings.DISPATCH_CHUNK_SIZE,
                "DISPATCH_CONCURRENCY": settings.DISPATCH_CONCURRENCY,
                "DEBUG": settings.DEBUG,
                "CONN_MAX_AGE": settings.DATABASES["default"].get("CONN_MAX_AGE"),
                "SENDGRID_TIMEOUT_SECONDS": settings.SENDGRID_TIMEOUT_SECONDS,
                "EMAIL_PROVIDERS": settings.CHANNEL_PROVIDERS.get("email"),
                # The real pipeline asks the provider gate before each call; the naive one not.
                "PROVIDER_GATES_ENABLED": getattr(settings, "PROVIDER_GATES_ENABLED", None),
                "SENDGRID_RATE_PER_SECOND": getattr(settings, "PROVIDER_RATE_LIMITS", {}).get("sendgrid"),
            },
            "worker_concurrency": WORKER_CONCURRENCY,
            "worker_command": " ".join(worker_command(concurrency=WORKER_CONCURRENCY, name="bench")[1:]),
            "gunicorn_workers": GUNICORN_WORKERS,
            "sandbox": {
                "latency_ms": self.options.latency_ms,
                "callback_interval_ms": SANDBOX_CALLBACK_INTERVAL_MS,
                "delivered_delay_ms": SANDBOX_DELIVERED_DELAY_MS,
            },
            "database": self.targets.db_name,
            "redis": self.targets.redis_url,
        }

    def run(self) -> dict[str, Any]:
        options = self.options
        started = datetime.now(UTC).isoformat(timespec="seconds")
        self.setup()
        accept_http = self.accept_http()
        accept_local = self.accept_in_process()
        optimized = self.end_to_end("optimized")
        naive = None if options.skip_naive else self.end_to_end("naive")
        return {
            "benchmark": "notifyhub",
            "started_at": started,
            "params": {
                "deliveries": options.deliveries,
                "accept_runs": options.accept_runs,
                "latency_ms": options.latency_ms,
                "timeout": options.timeout,
                "skip_naive": options.skip_naive,
            },
            "accept_1000_recipients_ms": accept_http,
            "accept_1000_recipients_in_process_ms": accept_local,
            "optimized": optimized,
            "naive": naive,
            "ratio": _ratios(optimized, naive, accept_local),
            "machine": self.machine(),
            "warnings": _noise_warnings({"optimized": optimized, "naive": naive}),
        }


def _noise_warnings(phases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Phases during which other processes of the machine used much of its CPU: their
    numbers understate what this machine can do."""
    warnings = []
    for name, phase in phases.items():
        if phase is None:
            continue
        cpu = phase["cpu_seconds"]
        share = cpu["other_processes"] / cpu["machine_capacity"] if cpu["machine_capacity"] else 0.0
        if share > NOISE_SHARE:
            warnings.append(
                f"{name}: other processes used {share:.0%} of the machine's CPU during the phase "
                f"({cpu['other_processes']} of {cpu['machine_capacity']} CPU-seconds); rerun on a "
                "quiet machine for representative numbers"
            )
    return warnings


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _ratios(optimized: dict[str, Any], naive: dict[str, Any] | None,
            accept_local: dict[str, Any]) -> dict[str, Any] | None:
    """optimized / naive: > 1 means the real pipeline is faster."""
    if naive is None:
        return None
    return {
        "sent_per_second": _ratio(optimized["sent_per_second"], naive["sent_per_second"]),
        "delivered_per_second": _ratio(optimized["delivered_per_second"], naive["delivered_per_second"]),
        # Accept rate (deliveries/s) optimized over naive, i.e. naive time / optimized time.
        "accept_per_second_in_process": _ratio(accept_local["naive_ms"], accept_local["optimized_ms"]),
    }


def install_sigterm_handler() -> None:
    """SIGTERM behaves like Ctrl-C, so the `finally` blocks stop the children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
