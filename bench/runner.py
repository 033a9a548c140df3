"""The benchmark's phases, in order, with every child process stopped on the way out.

setup → accept over HTTP → accept in-process (real vs naive) → optimized end to end (email)
→ naive end to end (email) → SMS end to end → push end to end (the channel phases: optimized
pipeline only). Before each end-to-end phase the notification tables are emptied, the bench
Redis DB is flushed (rate limits and breakers start full and closed), the sandbox is reset and
a fresh worker is started.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from .big import reusable as big_load_reusable
from .environment import (
    BenchSetupError,
    Targets,
    flush_redis,
    provider_settings,
    recreate_database,
    server_version,
    write_fcm_service_account,
    write_signing_key,
)
from .processes import (
    CpuSnapshot,
    ManagedProcess,
    cpu_breakdown,
    http_ok,
    log,
    start_worker,
    worker_command,
)
from .speed import speed_probe_ms

CLIENT_SLUG = "bench"
CLIENT_THROTTLE = "100000/s"
BENCH_SENDGRID_RATE = "5000"
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
    sms_deliveries: int = 1000
    push_deliveries: int = 1000
    sms_rate: float | None = None  # TWILIO_SMS_RATE_PER_SECOND for the worker (None: settings)
    push_rate: float | None = None  # FCM_RATE_PER_SECOND for the worker (None: settings)
    skip_sms: bool = False
    skip_push: bool = False
    channels_only: bool = False  # only the SMS and push phases
    # Issue 8's phases (bench/phases.py), on the Procfile's process layout.
    phases: tuple[str, ...] = ("single", "ceiling", "fanout", "priorities", "streams")
    new: Any = None  # phases.NewPhaseOptions
    big: Any = None  # big.BigOptions, or None: no `big` phase
    smoke: bool = False


class Bench:
    def __init__(self, options: Options, targets: Targets, workdir: Path) -> None:
        self.options = options
        self.targets = targets
        self.workdir = workdir
        self.sandbox: Any = None  # tests.support.sandbox.SandboxProcess
        self.gunicorn: ManagedProcess | None = None
        self.speed_at_start: float | None = None  # bench/speed.py, before anything starts
        self.web_cmd: list[str] = []
        self.worker: ManagedProcess | None = None
        self.child_env: dict[str, str] = {}
        self.provider_env: dict[str, str] = {}
        self.server_version = ""
        self.api: Any = None  # measure.HttpApi
        self.client: Any = None  # apps.clients.models.Client
        self.api_key = ""
        self.api_host = "127.0.0.1"
        self.api_port = 0
        self.api_base_url = ""
        self.postmaster_pid: int | None = None
        self.big_reused = False  # --big-reuse found the big load in the kept database
        self.stack: Any = None  # phases.Stack
        from . import procfile

        self.procfile = procfile.parse()

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
            if self.stack is not None:
                self.stack.stop()
                self.stack = None
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
        big = self.options.big
        self.big_reused = bool(big is not None and big.reuse
                               and big_load_reusable(targets.database_url, big))
        if self.big_reused:
            log(f"keeping database {targets.db_name!r} (--big-reuse: it holds the big load); "
                f"flushing Redis {targets.redis_url}")
            self.server_version = server_version(targets)
        else:
            log(f"recreating database {targets.db_name!r} and flushing Redis {targets.redis_url}")
            self.server_version = recreate_database(targets)
        flush_redis(targets)

        key_file, public_key = write_signing_key(self.workdir)
        from tests.support.sandbox import SandboxProcess, free_port

        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        web_port, sandbox_port, smtp_port = sorted(ports)
        web_url = f"http://127.0.0.1:{web_port}"
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        os.environ.update({
            **targets.child_env(),
            "DEBUG": "0",
            # Production-like limits for the bench's own client: its throttle raised through
            # the per-client setting (as an operator would for a large tenant), and room for
            # the fan-out phase's 50,000 inline recipients.
            "API_THROTTLE_RATES_BY_CLIENT": f"{CLIENT_SLUG}={CLIENT_THROTTLE}",
            "MAX_RECIPIENTS_PER_REQUEST": str(max(50_000, self.options.new.fanout
                                                  if self.options.new else 0)),
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
            # SendGrid's rate limit as an operator with a large account sets it (the declared
            # default, 500/s, is a conservative start: SendGrid publishes no fixed limit for
            # Mail Send and answers 429 past the account's). At 500/s the email phases measure
            # the limiter, not the pipeline; set SENDGRID_RATE_PER_SECOND to bench a limit
            # that binds (e.g. 500 for the priorities phase's urgent lanes).
            "SENDGRID_RATE_PER_SECOND": os.environ.get("SENDGRID_RATE_PER_SECOND",
                                                       BENCH_SENDGRID_RATE),
            "PYTHONUNBUFFERED": "1",
        })
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")
        # Created here (not by the sandbox at start) so every setting is known before Django
        # reads them: this process, gunicorn and the worker see the same values.
        service_account = write_fcm_service_account(self.workdir, token_uri=f"{sandbox_url}/token")
        self.sandbox = SandboxProcess(
            dict(os.environ),
            port=sandbox_port,
            smtp_port=smtp_port,
            startup_timeout=STARTUP_TIMEOUT,
            SANDBOX_SENDGRID_CALLBACK_URL=f"{web_url}/api/v1/webhooks/sendgrid",
            SANDBOX_SENDGRID_SIGNING_KEY_FILE=str(key_file),
            SANDBOX_TWILIO_STATUS_CALLBACK_URL=f"{web_url}/api/v1/webhooks/twilio",
            SANDBOX_TWILIO_INBOUND_URL=f"{web_url}/api/v1/webhooks/twilio/inbound",
            SANDBOX_FCM_SERVICE_ACCOUNT_FILE=str(service_account),
            SANDBOX_CALLBACK_INTERVAL_MS=str(SANDBOX_CALLBACK_INTERVAL_MS),
            SANDBOX_DELIVERED_DELAY_MS=str(SANDBOX_DELIVERED_DELAY_MS),
            SANDBOX_LOG_LEVEL="WARNING",
        )
        # Every provider at this run's sandbox (never at a `make run` on the default ports),
        # every callback at this run's gunicorn.
        self.provider_env = provider_settings(self.sandbox, web_url)
        os.environ.update(self.provider_env)
        self.child_env = dict(os.environ)

        self._django_setup()
        from django.core.management import call_command

        log("migrating")
        call_command("migrate", interactive=False, verbosity=0, stdout=sys.stderr)
        raw_key = self._reuse_tenant() if self.big_reused else self._create_tenant()

        log("starting the provider sandbox")
        self.sandbox.start()
        from . import procfile

        web_cmd = procfile.web_command(procfile.web_entry(self.procfile), port=web_port)
        log(f"starting the Procfile's gunicorn on 127.0.0.1:{web_port}: {' '.join(web_cmd[1:])}")
        self.web_cmd = web_cmd
        self.gunicorn = ManagedProcess("gunicorn", web_cmd, self.child_env).start()
        self.gunicorn.wait_ready(lambda: http_ok(f"{web_url}/api/v1/ready"), timeout=STARTUP_TIMEOUT)
        from .measure import HttpApi

        self.api = HttpApi("127.0.0.1", web_port, raw_key)
        self.api_key, self.api_port, self.api_base_url = raw_key, web_port, web_url
        self.postmaster_pid = _postmaster_pid()

    def restart_gunicorn(self, env: dict[str, str]) -> None:
        """gunicorn again, with this environment (the tracing phase's OTEL_* variables)."""
        if self.gunicorn is not None:
            self.gunicorn.stop()
        self.gunicorn = ManagedProcess("gunicorn", self.web_cmd, env).start()
        self.gunicorn.wait_ready(lambda: http_ok(f"{self.api_base_url}/api/v1/ready"),
                                 timeout=STARTUP_TIMEOUT)

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
            raise BenchSetupError(
                f"settings {os.environ['DJANGO_SETTINGS_MODULE']} do not use the bench database/"
                f"Redis ({actual} != {wanted}); run with DJANGO_SETTINGS_MODULE=notifyhub.settings.local"
            )
        # … nor the sandbox and callback URL (gunicorn and the worker read the same variables).
        from apps.notifications.providers.conf import provider_setting

        differing = sorted(name for name, value in self.provider_env.items()
                           if str(provider_setting(name, None)) != value)
        if differing:
            raise BenchSetupError(
                f"settings {os.environ['DJANGO_SETTINGS_MODULE']} do not take "
                f"{', '.join(differing)} from the environment; run with "
                "DJANGO_SETTINGS_MODULE=notifyhub.settings.local"
            )
        import celery_app  # noqa: F401 - makes the project's Celery app the current one

    def _reuse_tenant(self) -> str:
        """The kept database's bench client, with a new API key (the old one's raw value is
        gone with the run that made it)."""
        from apps.clients.models import Client
        from apps.clients.services import api_key_create

        self.client = Client.objects.get(slug=CLIENT_SLUG)
        _, raw_key = api_key_create(client=self.client, name="bench")
        return raw_key

    def _create_tenant(self) -> str:
        from apps.clients.models import Client
        from apps.clients.services import api_key_create
        from apps.templates.services import template_create, template_version_create

        self.client = Client.objects.create(name="Bench", slug=CLIENT_SLUG)
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
        from .channels import create_templates

        create_templates(self.client)
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
        """Email end to end through SendGrid: the real pipeline ("optimized", accepted over
        HTTP) or the naive one (accepted in-process, bench/naive.py)."""
        from .measure import HttpApi, chunks, recipients_for, send_body

        options = self.options
        recipients = recipients_for("o" if mode == "optimized" else "n", options.deliveries)
        batches = chunks(recipients, SEND_CHUNK)
        bodies = [send_body(batch, TEMPLATE_KEY, VARIABLES) for batch in batches]

        def accept() -> list[str]:
            log(f"{mode}: accepting {options.deliveries} deliveries in {len(batches)} send(s)")
            if mode == "optimized":
                api: HttpApi = self.api
                return [api.post_notification(body)[0]["id"] for body in bodies]
            from .naive import naive_accept

            return [
                str(naive_accept(client=self.client, recipients=batch, template_id=TEMPLATE_KEY,
                                 variables=dict(VARIABLES), priority="normal").id)
                for batch in batches
            ]

        result, stats, _ = self._phase(mode, expected=options.deliveries, accept=accept)
        result["sandbox"] = {"accepted": stats.get("accepted"), "rejected": stats.get("rejected"),
                             "callbacks": stats.get("callbacks")}
        return result

    def sms_phase(self) -> dict[str, Any]:
        """SMS end to end through Twilio: sent (the API call returned), then delivered (the
        signed `delivered` status callback reached gunicorn's /api/v1/webhooks/twilio), under
        the Twilio SMS rate limit the worker is given."""
        from .channels import (
            SMS_PROVIDER,
            SMS_RATE_ENV,
            SMS_TEMPLATE_KEY,
            rate_limit,
            sms_recipients,
        )
        from .measure import chunks, event_counts, send_body

        count = self.options.sms_deliveries
        limit = rate_limit(SMS_PROVIDER, SMS_RATE_ENV, "--sms-rate", self.options.sms_rate)
        bodies = [send_body(batch, SMS_TEMPLATE_KEY, VARIABLES)
                  for batch in chunks(sms_recipients("s", count), SEND_CHUNK)]

        def accept() -> list[str]:
            log(f"sms: accepting {count} deliveries in {len(bodies)} send(s); Twilio SMS rate "
                f"limit {limit.per_second:g}/s (burst {limit.burst}, {limit.source})")
            return [self.api.post_notification(body)[0]["id"] for body in bodies]

        result, stats, ids = self._phase("sms", expected=count, accept=accept,
                                         worker_env=limit.worker_env())
        return {**limit.report(), **result, "events": event_counts(ids),
                "sandbox": _provider_stats(stats, "twilio")}

    def push_phase(self) -> dict[str, Any]:
        """Push end to end through FCM to one registered device per recipient. FCM sends no
        receipts: a push is done when the worker recorded it `sent`."""
        from .channels import (
            PUSH_PROVIDER,
            PUSH_RATE_ENV,
            PUSH_TEMPLATE_KEY,
            create_push_recipients,
            rate_limit,
        )
        from .measure import chunks, event_counts, send_body

        count = self.options.push_deliveries
        limit = rate_limit(PUSH_PROVIDER, PUSH_RATE_ENV, "--push-rate", self.options.push_rate)
        log(f"push: registering {count} recipients with one device each")
        recipient_ids = create_push_recipients(self.client, "p", count)
        bodies = [send_body(batch, PUSH_TEMPLATE_KEY, VARIABLES)
                  for batch in chunks(recipient_ids, SEND_CHUNK)]

        def accept() -> list[str]:
            log(f"push: accepting {count} deliveries in {len(bodies)} send(s); FCM rate limit "
                f"{limit.per_second:g}/s (burst {limit.burst}, {limit.source})")
            return [self.api.post_notification(body)[0]["id"] for body in bodies]

        result, stats, ids = self._phase("push", expected=count, accept=accept, receipts=False,
                                         worker_env=limit.worker_env())
        return {**limit.report(), **result, "events": event_counts(ids),
                "sandbox": _provider_stats(stats, "fcm")}

    def _phase(
        self,
        label: str,
        *,
        expected: int,
        accept: Callable[[], Sequence[str]],
        receipts: bool = True,
        worker_env: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """One end-to-end phase: reset, a fresh worker (with `worker_env` on top of the common
        environment), `accept()` (returns the notification ids; timed), wait until every
        delivery is final (or, without `receipts`, sent), read the numbers back. Returns the
        result, the sandbox's stats and the notification ids."""
        from .measure import (
            FINAL,
            db_activity,
            delta,
            e2e_result,
            utc_from_epoch,
            wait_for_deliveries,
        )

        options = self.options
        self.reset_between_phases()
        log(f"{label}: starting a fresh worker (-c {WORKER_CONCURRENCY})")
        self.worker = start_worker({**self.child_env, **(worker_env or {})},
                                   concurrency=WORKER_CONCURRENCY, name=f"bench-{label}",
                                   timeout=STARTUP_TIMEOUT)
        db_before = db_activity(self.targets.db_name)
        cpu_before = CpuSnapshot.take()
        started_at = utc_from_epoch(time.time())
        t0 = time.monotonic()
        deadline = t0 + options.timeout
        notification_ids = list(accept())
        accept_seconds = time.monotonic() - t0

        def context() -> str:
            worker_log = self.worker.log_tail() if self.worker else ""
            gunicorn_log = self.gunicorn.log_tail(15) if self.gunicorn else ""
            return (f"sandbox stats: {json.dumps(self.sandbox.stats().get('callbacks'))}\n"
                    f"--- worker log ---\n{worker_log}\n--- gunicorn log ---\n{gunicorn_log}")

        def callbacks_pending() -> int:
            return int(self.sandbox.stats()["callbacks"]["pending"])

        sent_seen, final_seen, polls, stalled = wait_for_deliveries(
            label=label, notification_ids=notification_ids, expected=expected,
            deadline=deadline, context=context, receipts=receipts,
            callbacks_pending=callbacks_pending,
        )
        cpu_after = CpuSnapshot.take()
        time.sleep(1.1)  # let PostgreSQL publish the backends' statistics
        db_after = db_activity(self.targets.db_name)
        result = e2e_result(
            notification_ids=notification_ids, expected=expected, started_at=started_at,
            accept_seconds=accept_seconds, sent_seen=sent_seen, final_seen=final_seen, t0=t0,
            receipts=receipts,
        )
        if stalled:
            # Sent, but their final receipt was dropped on the way (present only then).
            result["without_final_receipt"] = sum(
                n for status, n in result["counts"].items() if status not in FINAL)
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
        from .phases import callback_answers

        result["callback_answers"] = callback_answers(stats)
        result["callback_answers_5xx"] = result["callback_answers"].get("5xx", 0)
        if receipts:
            log(f"{label}: {result['sent_per_second']} sent/s, "
                f"{result['delivered_per_second']} delivered/s")
        else:
            log(f"{label}: {result['sent_per_second']} sent/s")
        self._stop_worker()
        return result, stats, notification_ids

    def new_phases(self) -> dict[str, Any]:
        """Issue 8's phases on the Procfile's workers (started once, fresh state first)."""
        from django.db import DatabaseError

        from . import phases

        wanted = [name for name in (
                "single", "ceiling", "fanout", "priorities", "streams", "tracing")
                  if name in self.options.phases]
        if not wanted:
            return {}
        self.reset_between_phases()
        self.stack = phases.Stack(self.child_env, self.workdir, self.procfile)
        self.stack.start(timeout=STARTUP_TIMEOUT)
        out: dict[str, Any] = {}
        from .streams import streams_phase

        functions = {"single": phases.single_phase, "ceiling": phases.ceiling_phase,
                     "fanout": phases.fanout_phase, "priorities": phases.priorities_phase,
                     "streams": streams_phase, "tracing": phases.tracing_phase}
        try:
            for name in wanted:
                started = time.monotonic()
                try:
                    out[name] = functions[name](self, self.stack, self.options.new)
                except (RuntimeError, OSError, ValueError, KeyError, DatabaseError) as exc:
                    # One broken phase does not cost the others' numbers; the report says why.
                    log(f"{name}: FAILED: {type(exc).__name__}: {exc}")
                    out[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000],
                                 "server_log": phases.server_errors(self)}
                    self.stack.stop()
                    self.reset_between_phases()
                    self.stack.start(timeout=STARTUP_TIMEOUT)
                out[name]["phase_seconds"] = round(time.monotonic() - started, 1)
            if "single" in out:
                out["single"]["processes"] = self.stack.describe()
        finally:
            self.stack.stop()
            self.stack = None
        return out

    def big_phase(self) -> dict[str, Any]:
        from .big import big_phase

        if not self.big_reused:
            self.reset_between_phases()
        return big_phase(self, self.options.big)

    # -- report -------------------------------------------------------------------------

    def machine(self) -> dict[str, Any]:
        from django.conf import settings

        from apps.notifications.providers.conf import provider_setting

        return {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            # CPU ms of a fixed piece of Python work (bench/speed.py): higher is slower.
            "speed_probe_ms": {"at_start": self.speed_at_start,
                               "at_end": speed_probe_ms()},
            "postgresql": self.server_version,
            "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE"),
            "settings": {
                "DISPATCH_CHUNK_SIZE": settings.DISPATCH_CHUNK_SIZE,
                "DISPATCH_CONCURRENCY": settings.DISPATCH_CONCURRENCY,
                "DEBUG": settings.DEBUG,
                "CONN_MAX_AGE": settings.DATABASES["default"].get("CONN_MAX_AGE"),
                "SENDGRID_TIMEOUT_SECONDS": provider_setting("SENDGRID_TIMEOUT_SECONDS"),
                "EMAIL_PROVIDERS": settings.CHANNEL_PROVIDERS.get("email"),
                # The real pipeline asks the provider gate before each call; the naive one not.
                "PROVIDER_GATES_ENABLED": getattr(settings, "PROVIDER_GATES_ENABLED", None),
                "SENDGRID_RATE_PER_SECOND": _sendgrid_rate(),
                "PROVIDER_URGENT_SHARE": getattr(settings, "PROVIDER_URGENT_SHARE", None),
            },
            "worker_concurrency": WORKER_CONCURRENCY,
            "worker_command": " ".join(worker_command(concurrency=WORKER_CONCURRENCY, name="bench")[1:]),
            "gunicorn_command": " ".join(self.gunicorn.cmd[1:]) if self.gunicorn else None,
            "gunicorn_workers": int(os.environ.get("GUNICORN_WORKERS", "2")),
            "gunicorn_threads": int(os.environ.get("GUNICORN_THREADS", "4")),
            "procfile": [{"name": e.name, "kind": e.kind, "queues": list(e.queues),
                          "concurrency": e.concurrency} for e in self.procfile],
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
        self.speed_at_start = speed_probe_ms()
        self.setup()
        accept_http = accept_local = optimized = naive = None
        if not options.channels_only:
            accept_http = self.accept_http()
            accept_local = self.accept_in_process()
            optimized = self.end_to_end("optimized")
            naive = None if options.skip_naive else self.end_to_end("naive")
        sms = None if options.skip_sms else self.sms_phase()
        push = None if options.skip_push else self.push_phase()
        new = self.new_phases()
        big = self.big_phase() if options.big is not None else None
        ratio = _ratios(optimized, naive, accept_local)
        ceiling = new.get("ceiling")
        if optimized is not None and ceiling:
            ratio = {**(ratio or {}), "pipeline_to_ceiling_ratio": _ratio(
                optimized["delivered_per_second"], ceiling.get("sends_per_second"))}
        single = new.get("single") or {}
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
            "ratio": ratio,
            "sms": sms,
            "push": push,
            "single": new.get("single"),
            "api_cpu_ms_per_send": single.get("api_cpu_ms_per_send"),
            "server_cpu_ms_per_notification": single.get("server_cpu_ms_per_notification"),
            "ceiling": ceiling,
            "fanout": new.get("fanout"),
            "priorities": new.get("priorities"),
            "streams": new.get("streams"),
            "tracing": new.get("tracing"),
            "big": big,
            "callback_answers_5xx": {
                name: phase.get("callback_answers_5xx") for name, phase in (
                    ("optimized", optimized), ("naive", naive), ("sms", sms), ("push", push),
                    ("single", new.get("single")), ("fanout", new.get("fanout")),
                    ("priorities", new.get("priorities")))
                if phase is not None},
            "smoke": options.smoke,
            "machine": self.machine(),
            "warnings": _warnings({"optimized": optimized, "naive": naive, "sms": sms,
                                   "push": push, **{
                                       f"single {rate['rate']:g}/s": rate
                                       for rate in single.get("rates", [])}}),
        }


def _postmaster_pid() -> int | None:
    """The PostgreSQL server process of the bench database, when it runs on this machine."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    try:
        stat = Path(f"/proc/{backend}/stat").read_text()
    except OSError:
        return None  # another machine (or container)
    return int(stat.rpartition(")")[2].split()[1])


def _warnings(phases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Phases during which other processes of the machine used much of its CPU (their
    numbers understate what this machine can do), and phases that ended with deliveries whose
    final receipt never arrived."""
    warnings = []
    for name, phase in phases.items():
        if phase is None:
            continue
        missing = phase.get("without_final_receipt")
        if missing:
            warnings.append(
                f"{name}: {missing} of {phase['deliveries']} deliveries were sent but never got "
                "a final receipt, and the sandbox had no callback left to send (see `counts` and "
                "`sandbox.callbacks`: dropped by the pipeline, or refused); the delivered numbers "
                "count only the others"
            )
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


def _ratios(optimized: dict[str, Any] | None, naive: dict[str, Any] | None,
            accept_local: dict[str, Any] | None) -> dict[str, Any] | None:
    """optimized / naive: > 1 means the real pipeline is faster."""
    if optimized is None or naive is None or accept_local is None:
        return None
    return {
        "sent_per_second": _ratio(optimized["sent_per_second"], naive["sent_per_second"]),
        "delivered_per_second": _ratio(optimized["delivered_per_second"], naive["delivered_per_second"]),
        # Accept rate (deliveries/s) optimized over naive, i.e. naive time / optimized time.
        "accept_per_second_in_process": _ratio(accept_local["naive_ms"], accept_local["optimized_ms"]),
    }


def _provider_stats(stats: dict[str, Any], provider: str) -> dict[str, Any]:
    """The sandbox's counters for one provider since the phase's reset (FCM: with the OAuth
    tokens it issued)."""
    entry = stats.get("by_provider", {}).get(provider, {})
    keys = ("requests", "accepted", "rejected", "by_status", "callbacks", "tokens_issued",
            "token_errors")
    return {key: entry[key] for key in keys if key in entry}


def install_sigterm_handler() -> None:
    """SIGTERM behaves like Ctrl-C, so the `finally` blocks stop the children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _sendgrid_rate() -> float | None:
    """SendGrid's rate limit as the gate applies it (settings override, else its declaration)."""
    from django.conf import settings

    from apps.notifications.providers.registry import default_rate

    configured = getattr(settings, "PROVIDER_RATE_LIMITS", {}).get("sendgrid")
    return float(configured) if isinstance(configured, (int, float)) else default_rate("sendgrid")
