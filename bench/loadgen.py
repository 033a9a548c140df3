"""Open-loop load generator: `python -m bench.loadgen --url … --key … --rate R --duration D`.

Request i is scheduled at start + i / rate whatever happened to the earlier ones (an open
loop: a slow server gets more concurrent requests, not fewer), each a single-recipient send
(POST /api/v1/notifications, one new inline email recipient). Latency is measured from the
request's *scheduled* time, so a client that could not keep up does not hide server delays
(no coordinated omission). Runs in its own process so its CPU is not the bench's or the
server's. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 1)


def body_for(i: int, *, prefix: str, template: str, priority: str) -> bytes:
    recipient = {"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"}
    return json.dumps({"recipients": [recipient], "template_id": template,
                       "variables": {"name": "Bench"}, "priority": priority}).encode()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    total = max(1, round(args.rate * args.duration))
    priorities = args.priorities.split(",")
    bodies = [body_for(i, prefix=args.prefix, template=args.template,
                       priority=priorities[i % len(priorities)]) for i in range(total)]
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    records: list[dict[str, Any]] = []
    max_lag = 0.0
    url = args.url.rstrip("/") + "/api/v1/notifications"

    async def one(session: aiohttp.ClientSession, i: int, scheduled: float) -> None:
        outcome = "timeout"
        try:
            async with session.post(url, data=bodies[i], headers=headers) as resp:
                raw = await resp.read()
                outcome = str(resp.status)
        except TimeoutError:
            outcome = "timeout"
        except aiohttp.ClientError as exc:
            outcome = f"error:{type(exc).__name__}"
        done = time.perf_counter()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "202":
            latencies.append((done - scheduled) * 1000)
            if args.records:
                records.append({"id": json.loads(raw)["id"], "priority": priorities[i % len(priorities)],
                                "accepted_at": time.time(),
                                "latency_ms": round((done - scheduled) * 1000, 1)})

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
            tasks.append(asyncio.create_task(one(session, i, scheduled)))
        send_seconds = time.perf_counter() - start
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    ok = outcomes.get("202", 0)
    result: dict[str, Any] = {
        "rate": args.rate,
        "duration_s": args.duration,
        "sent": total,
        "accepted": ok,
        "achieved_rate": round(total / send_seconds, 1) if send_seconds > 0 else None,
        "wall_s": round(wall, 2),
        "scheduler_max_lag_ms": round(max_lag * 1000, 1),
        "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                       "p99": percentile(latencies, 0.99),
                       "max": round(max(latencies), 1) if latencies else None},
        "errors": {k: v for k, v in sorted(outcomes.items()) if k != "202"},
        "error_count": total - ok,
    }
    if args.records:
        result["records"] = records
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="base URL of the API, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="API key")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    parser.add_argument("--template", default="bench_welcome")
    parser.add_argument("--prefix", default="lg", help="recipient id prefix (unique per run)")
    parser.add_argument("--priorities", default="normal",
                        help="comma-separated priorities, used round-robin")
    parser.add_argument("--records", action="store_true",
                        help="also list every accepted send (id, priority, accept time)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be > 0")
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
