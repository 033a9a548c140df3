"""The `streams` phase (issue 11 part 4): the inbox's live stream under load.

1. The Procfile's `stream` process is started on a free port (the Procfile's command).
2. The API's single-send latency is measured without streams (bench/loadgen.py, email).
3. `--streams` recipients get an inbox token each, and bench/streamclient.py (its own
   process) opens one SSE connection per recipient; the stream process's memory (RSS) is read
   before and after: total and per connection.
4. The single-send latency again, with every stream open.
5. In-app messages through the API (`channels: ["in_app"]`, `--stream-batch` connected
   recipients per request, round robin) at `--stream-rate` messages per second for
   `--stream-duration` seconds; then the same rate as single-recipient requests. Each: from
   every 202 to the message event on its recipient's connection (p50/p95/p99), through the
   Procfile's Celery workers, PostgreSQL and Redis; and from the worker's store (the
   message's created_at) to the event: the stream's share.
6. The single-send latency without streams again, after they are closed.

Needs Django set up (imported by the runner after setup)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from queue import Empty, Queue
from typing import TYPE_CHECKING, Any

from . import procfile
from .processes import REPO_ROOT, ManagedProcess, ProcessError, http_ok, log

if TYPE_CHECKING:
    from .phases import NewPhaseOptions, Stack
    from .runner import Bench

IN_APP_TEMPLATE_KEY = "bench_inapp"
RECIPIENT_PREFIX = "st"
HEALTH_PATH = "/api/v1/inbox/stream/health"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ProcessError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _in_app_template(client: Any) -> None:
    from apps.templates.models import Template
    from apps.templates.services import template_create, template_version_create

    if Template.objects.filter(client=client, key=IN_APP_TEMPLATE_KEY).exists():
        return
    template = template_create(client=client, key=IN_APP_TEMPLATE_KEY, name="Bench in-app",
                               channels=["in_app"])
    template_version_create(template=template, in_app_title="st-{{ n }}:{{ recipient.id }}",
                            in_app_body="In-app message {{ n }} for {{ recipient.id }}.")


def _recipients_and_tokens(client: Any, count: int) -> tuple[list[str], list[str]]:
    from apps.inbox.tokens import mint_inbox_token
    from apps.recipients.models import Recipient

    ids = [f"{RECIPIENT_PREFIX}{i}" for i in range(count)]
    Recipient.objects.bulk_create([Recipient(client=client, external_id=i) for i in ids],
                                  ignore_conflicts=True, batch_size=2000)
    by_id = {r.external_id: r for r in Recipient.objects.filter(client=client, external_id__in=ids)}
    tokens = [mint_inbox_token(client, by_id[i], ttl=timedelta(hours=2)).token for i in ids]
    return ids, tokens


class StreamClient:
    """bench/streamclient.py in its own process, spoken to with JSON lines."""

    def __init__(self, port: int, tokens_file: Path, concurrency: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.streamclient", "--port", str(port), "--tokens",
             str(tokens_file), "--concurrency", str(concurrency)],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True)
        self.lines: Queue[str] = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except Empty as exc:
            raise RuntimeError(f"the stream client did not answer within {timeout:.0f} s") from exc
        if not line:
            raise RuntimeError(f"the stream client exited ({self.proc.wait()})")
        return dict(json.loads(line))

    def command(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command({"cmd": "quit"}, timeout=30)
                self.proc.wait(timeout=30)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)


def _health(port: int) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=10) as resp:
        return dict(json.load(resp))


def _mean(a: float | None, b: float | None) -> float | None:
    return round((a + b) / 2, 1) if a is not None and b is not None else None


def streams_phase(bench: Bench, stack: Stack, opts: NewPhaseOptions) -> dict[str, Any]:
    from tests.support.sandbox import free_port

    from .phases import _run_loadgen

    entry = procfile.stream_entry(bench.procfile)
    if entry is None:
        raise RuntimeError("the Procfile has no stream process (python -m apps.stream)")
    count = opts.streams
    log(f"streams: creating {count} recipients and their inbox tokens")
    _in_app_template(bench.client)
    ids, tokens = _recipients_and_tokens(bench.client, count)
    tokens_file = bench.workdir / "stream-tokens.json"
    tokens_file.write_text(json.dumps(tokens))

    port = free_port()
    cmd = procfile.stream_command(entry, port=port)
    env = {**bench.child_env, "INBOX_STREAM_MAX_CONNECTIONS": str(max(count * 2, 20_000))}
    log(f"streams: starting the Procfile's stream process on 127.0.0.1:{port}: {' '.join(cmd[1:])}")
    stream = ManagedProcess("stream", cmd, env).start()
    client: StreamClient | None = None
    try:
        stream.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}{HEALTH_PATH}"), timeout=60)
        api_rate, api_duration = opts.stream_api_rate, opts.stream_api_duration
        # Warm the API and the workers first: the first requests of fresh processes are slow.
        _run_loadgen(bench, rate=api_rate, duration=min(api_duration, 3.0), timeout=30.0, prefix="su")
        log(f"streams: single-send latency without streams ({api_rate:g}/s for {api_duration:g} s)")
        without, _, _ = _run_loadgen(bench, rate=api_rate, duration=api_duration, timeout=30.0,
                                     prefix="sn")
        rss_before = rss_kib(stream.pid)
        log(f"streams: opening {count} connections (stream process RSS {rss_before / 1024:.1f} MiB)")
        client = StreamClient(port, tokens_file, concurrency=opts.stream_connect_concurrency)
        connected = client.answer(timeout=opts.timeout)
        time.sleep(1.0)
        rss_open = rss_kib(stream.pid)
        health_open = _health(port)
        log(f"streams: {connected['open']} open in {connected['seconds']} s "
            f"({connected['failed']} failed); RSS {rss_open / 1024:.1f} MiB")
        cpu_idle_start = cpu_seconds(stream.pid)
        log(f"streams: single-send latency with {connected['open']} streams open")
        with_streams, _, _ = _run_loadgen(bench, rate=api_rate, duration=api_duration,
                                          timeout=30.0, prefix="sw")
        idle_window = api_duration
        cpu_idle = cpu_seconds(stream.pid) - cpu_idle_start
        log(f"streams: {opts.stream_rate:g} in-app messages/s for {opts.stream_duration:g} s, "
            f"{opts.stream_batch} recipients per request")
        cpu_send_start = cpu_seconds(stream.pid)
        send = {"cmd": "send", "url": bench.api_base_url, "key": bench.api_key,
                "template": IN_APP_TEMPLATE_KEY, "recipients": ids, "rate": opts.stream_rate,
                "duration": opts.stream_duration, "wait": 20}
        sent = client.command({**send, "batch": opts.stream_batch},
                              timeout=opts.stream_duration + 120)
        cpu_send = cpu_seconds(stream.pid) - cpu_send_start
        log(f"streams: in-app accept→event p95 {sent['accept_to_event_ms']['p95']} ms; now the same "
            "rate as single-recipient requests")
        sent_single = client.command({**send, "batch": 1}, timeout=opts.stream_duration + 120)
        rss_after = rss_kib(stream.pid)
        health_end = _health(port)
        closed = client.command({"cmd": "quit"}, timeout=60)
        client = None
        time.sleep(1.0)
        log("streams: single-send latency without streams again (they are closed)")
        after, _, _ = _run_loadgen(bench, rate=api_rate, duration=api_duration, timeout=30.0,
                                   prefix="sa")
    finally:
        if client is not None:
            client.stop()
        stream.stop()
    open_count = max(int(connected["open"]), 1)
    # The runs without streams before and after, pooled by their mean (the machine is shared).
    p50_without = _mean(without["latency_ms"]["p50"], after["latency_ms"]["p50"])
    p95_without = _mean(without["latency_ms"]["p95"], after["latency_ms"]["p95"])
    p50_with, p95_with = with_streams["latency_ms"]["p50"], with_streams["latency_ms"]["p95"]
    result: dict[str, Any] = {
        "connections": count,
        "connected": connected,
        "stream_process": {
            "command": " ".join(cmd[1:]),
            "rss_mib_before": round(rss_before / 1024, 1),
            "rss_mib_with_streams": round(rss_open / 1024, 1),
            "rss_mib_after_messages": round(rss_after / 1024, 1),
            "rss_kib_per_connection": round((rss_open - rss_before) / open_count, 1),
            "cpu_percent_idle_streams": round(100 * cpu_idle / idle_window, 1) if idle_window else None,
            "cpu_ms_per_message": round(cpu_send * 1000 / max(sent["accepted"], 1), 2),
            "health_with_streams": health_open,
            "health_at_end": health_end,
        },
        "in_app": sent,
        # The same message rate, one recipient per request: the whole pipeline's CPU per
        # notification (API, worker, PostgreSQL) at that rate, not the stream, sets this one.
        "in_app_single_recipient_requests": sent_single,
        "api_single_send_latency_ms": {
            "rate": api_rate, "duration_s": api_duration,
            "without_streams_before": without["latency_ms"], "with_streams": with_streams["latency_ms"],
            "without_streams_after": after["latency_ms"],
            "errors": {"before": without["errors"], "with": with_streams["errors"],
                       "after": after["errors"]},
            "p50_change_percent": round(100 * (p50_with - p50_without) / p50_without, 1)
            if p50_without and p50_with else None,
            "p95_change_percent": round(100 * (p95_with - p95_without) / p95_without, 1)
            if p95_without and p95_with else None,
        },
        "closed": closed,
        "targets": {"accept_to_event_p95_ms": 1000, "single_send_latency_change_percent": 10},
    }
    log(f"streams: {connected['open']} connections, {result['stream_process']['rss_kib_per_connection']} "
        f"KiB each; in-app accept→event p95 {sent['accept_to_event_ms']['p95']} ms "
        f"({sent['missing']} missing), stored→event p95 {sent['stored_to_event_ms']['p95']} ms; "
        f"single send p50 {p50_without} → {p50_with} ms")
    return result
