"""The browsers of the `streams` phase: `python -m bench.streamclient --port P --tokens FILE`.

Opens one SSE connection per token to the stream process (raw asyncio streams: a few KB per
connection here, so 5,000 fit in one process), then obeys JSON commands on stdin, one per line,
and answers each with one JSON line on stdout:

- (at start)  {"type": "connected", "open", "failed", "errors", "seconds"}
- {"cmd": "send", "url", "key", "template", "recipients", "rate", "batch", "duration", "wait"}
  sends in-app messages (POST /api/v1/notifications, channels ["in_app"], variables
  {"n": i}) at `rate` messages per second for `duration` seconds, `batch` recipients per
  request (the next ones round robin), as an open loop (bench/loadgen.py), and answers with the
  time from each 202 (the epoch when it reached this process) to the message event titled
  "st-<i>:<recipient>" on that recipient's connection:
  {"type": "sent", "accepted", "arrived", "missing", "accept_to_event_ms", …}
- {"cmd": "quit"}  closes everything: {"type": "closed", "open_at_end", "ended_early"}

Progress goes to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from datetime import datetime
from typing import Any

import aiohttp

TITLE = re.compile(rb'"title":"st-([^"]+)"')
CREATED = re.compile(rb'"created_at":"([^"]+)"')


def log(message: str) -> None:
    print(f"[streamclient] {message}", file=sys.stderr, flush=True)


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 1)


class Browsers:
    def __init__(self, port: int, tokens: list[str]) -> None:
        self.port = port
        self.tokens = tokens
        self.arrived: dict[str, float] = {}
        self.stored_to_event_ms: list[float] = []
        self.open = 0
        self.ended_early = 0
        self.errors: dict[str, int] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.ready: asyncio.Queue[bool] = asyncio.Queue()

    async def one(self, token: str, gate: asyncio.Semaphore) -> None:
        writer = None
        try:
            async with gate:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), timeout=30)
                writer.write(f"GET /api/v1/inbox/stream?token={token} HTTP/1.1\r\n"
                             "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=60)
                if not head.startswith(b"HTTP/1.1 200 "):
                    raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
                # Connected once the stream's first counts event arrived (the server is done
                # opening it).
                first = await asyncio.wait_for(reader.readuntil(b"event: counts"), timeout=60)
                del first
            self.open += 1
            self.ready.put_nowait(True)
            while True:
                line = await reader.readline()
                if not line:
                    self.ended_early += 1
                    self.open -= 1
                    return
                if line.startswith(b"data: ") and b'"title":"st-' in line:
                    self.record(line, time.time())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            key = type(exc).__name__ if not isinstance(exc, ConnectionError) else str(exc)[:60]
            self.errors[key] = self.errors.get(key, 0) + 1
            self.ready.put_nowait(False)
        finally:
            if writer is not None:
                writer.close()

    def record(self, line: bytes, now: float) -> None:
        """A message event's data line: when it arrived, and how long after the worker
        stored the message (its created_at) — the stream's own share of the latency."""
        title = TITLE.search(line)
        if title is None:
            return
        key = title.group(1).decode()
        if key in self.arrived:
            return
        self.arrived[key] = now
        created = CREATED.search(line)
        if created is not None:
            stored = datetime.fromisoformat(created.group(1).decode().replace("Z", "+00:00"))
            self.stored_to_event_ms.append((now - stored.timestamp()) * 1000)

    async def connect_all(self, concurrency: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        self.tasks = [asyncio.create_task(self.one(t, gate)) for t in self.tokens]
        done = 0
        last = 0.0
        while done < len(self.tokens):
            await self.ready.get()
            done += 1
            if time.monotonic() - last > 2:
                log(f"{self.open}/{len(self.tokens)} connections open")
                last = time.monotonic()
        return {"type": "connected", "open": self.open, "failed": len(self.tokens) - self.open,
                "errors": self.errors, "seconds": round(time.monotonic() - started, 2)}

    async def send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rate, duration, batch = float(cmd["rate"]), float(cmd["duration"]), int(cmd.get("batch", 1))
        recipients: list[str] = cmd["recipients"]
        requests_per_second = rate / batch
        total = max(1, round(requests_per_second * duration))
        url = cmd["url"].rstrip("/") + "/api/v1/notifications"
        headers = {"Authorization": f"Bearer {cmd['key']}", "Content-Type": "application/json"}
        accepted: dict[str, float] = {}
        api_ms: list[float] = []
        outcomes: dict[str, int] = {}
        samples: dict[str, str] = {}

        async def post(session: aiohttp.ClientSession, i: int, scheduled: float) -> None:
            chosen = [recipients[(i * batch + k) % len(recipients)] for k in range(batch)]
            body = json.dumps({"recipients": chosen, "template_id": cmd["template"],
                               "channels": ["in_app"], "variables": {"n": i}})
            outcome = "error"
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    raw = await resp.read()
                    outcome = str(resp.status)
                    if resp.status != 202:
                        samples.setdefault(outcome, raw[:300].decode("utf-8", "replace"))
                    if resp.status == 202:
                        now = time.time()
                        accepted.update((f"{i}:{rid}", now) for rid in chosen)
                        api_ms.append((time.perf_counter() - scheduled) * 1000)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=timeout) as session:
            start = time.perf_counter() + 0.05
            tasks = []
            for i in range(total):
                scheduled = start + i / requests_per_second
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(session, i, scheduled)))
            await asyncio.gather(*tasks)
        deadline = time.monotonic() + float(cmd.get("wait", 15))
        while time.monotonic() < deadline and any(i not in self.arrived for i in accepted):
            await asyncio.sleep(0.1)
        latencies = [(self.arrived[i] - at) * 1000 for i, at in accepted.items() if i in self.arrived]
        stored = self.stored_to_event_ms
        return {
            "type": "sent", "rate": rate, "recipients_per_request": batch, "duration_s": duration,
            "requests": total, "sent": total * batch,
            "accepted": len(accepted), "outcomes": outcomes, "error_samples": samples,
            "arrived": len(latencies), "missing": len(accepted) - len(latencies),
            "accept_to_event_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                                   "p99": percentile(latencies, 0.99),
                                   "max": round(max(latencies), 1) if latencies else None},
            # From the worker's store (the message's created_at, just before its commit and
            # publish) to the event on the connection: the stream's own share.
            "stored_to_event_ms": {"p50": percentile(stored, 0.5), "p95": percentile(stored, 0.95),
                                   "p99": percentile(stored, 0.99)},
            # From each request's scheduled time to its 202 (open loop, as bench/loadgen.py).
            "api_latency_ms": {"p50": percentile(api_ms, 0.5), "p95": percentile(api_ms, 0.95)},
        }

    async def close(self) -> dict[str, Any]:
        open_at_end = self.open
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return {"type": "closed", "open_at_end": open_at_end, "ended_early": self.ended_early}


async def main_async(args: argparse.Namespace) -> None:
    with open(args.tokens) as fh:
        tokens = json.load(fh)
    limit = raise_fd_limit(len(tokens) + 1000)
    log(f"file descriptor limit {limit}; opening {len(tokens)} connections")
    browsers = Browsers(args.port, tokens)
    emit(await browsers.connect_all(args.concurrency))
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "send":
            emit(await browsers.send(cmd))
        elif cmd["cmd"] == "quit":
            break
    emit(await browsers.close())


def emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streamclient", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", required=True, help="a JSON file: a list of inbox tokens")
    parser.add_argument("--concurrency", type=int, default=200, help="connections opened at once")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
