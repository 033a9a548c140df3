"""The ceiling: what the SendGrid SDK and the sandbox allow with nothing else in the way.

`processes` processes (the pipeline's worker processes that send email) x `threads` threads
each (DISPATCH_CONCURRENCY) call `SendGridAPIClient(...).client.mail.send.post` with payloads
built beforehand (the same shape as the pipeline's: from, to, subject, text + HTML, custom
args, category). No database, no Celery, no Redis. Each thread keeps one SDK client, as a
worker thread could. Started with `spawn`, so the children carry none of the bench's Django
state.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any


def _payloads(tag: str, count: int) -> list[dict[str, Any]]:
    from sendgrid.helpers.mail import Category, Content, CustomArg, From, Mail, To

    out = []
    for i in range(count):
        mail = Mail(from_email=From("bench@notifyhub.test"), to_emails=To(f"{tag}{i}@example.com"),
                    subject="Hello Bench")
        mail.add_content(Content("text/plain", f"Hi Bench, this is {tag}{i}."))
        mail.add_content(Content("text/html", f"<p>Hi Bench, this is <b>{tag}{i}</b>.</p>"))
        mail.add_custom_arg(CustomArg("notifyhub_delivery_id", f"ceiling-{tag}{i}"))
        mail.add_custom_arg(CustomArg("notifyhub_notification_id", f"ceiling-{tag}"))
        mail.category = Category("transactional")
        out.append(mail.get())
    return out


def _child(index: int, host: str, api_key: str, threads: int, count: int, timeout: float,
           go: Any, results: Any) -> None:
    from sendgrid import SendGridAPIClient

    payloads = _payloads(f"c{index}-", count)
    lock = threading.Lock()
    position = [0]
    errors = [0]

    def worker() -> None:
        client = SendGridAPIClient(api_key=api_key, host=host)
        while True:
            with lock:
                i = position[0]
                position[0] += 1
            if i >= count:
                return
            try:
                response = client.client.mail.send.post(request_body=payloads[i], timeout=timeout)
                ok = response.status_code in (200, 202)
            except Exception:
                ok = False
            if not ok:
                with lock:
                    errors[0] += 1

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    results.put(("ready", index, 0.0, 0.0, 0))
    go.wait()
    started = time.time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put(("done", index, started, time.time(), errors[0]))


def measure_ceiling(*, host: str, api_key: str, processes: int, threads: int, total: int,
                    timeout: float = 30.0) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results = ctx.Queue()
    per = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    children = [ctx.Process(target=_child, args=(i, host, api_key, threads, per[i], timeout, go, results),
                            daemon=True) for i in range(processes)]
    for child in children:
        child.start()
    for _ in children:
        results.get(timeout=120)
    go.set()
    done = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=30)
    start = min(d[2] for d in done)
    end = max(d[3] for d in done)
    errors = sum(d[4] for d in done)
    wall = end - start
    return {
        "processes": processes,
        "threads_per_process": threads,
        "threads": processes * threads,
        "sends": total,
        "errors": errors,
        "wall_seconds": round(wall, 3),
        "sends_per_second": round((total - errors) / wall, 1) if wall > 0 else None,
    }
