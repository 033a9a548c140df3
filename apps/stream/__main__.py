"""`python -m apps.stream [--host H] [--port P]`: the inbox's live stream process (the
Procfile's `stream`). One asyncio event loop (uvloop when installed) holds every connection;
run more processes (behind a load balancer) for more connections or cores.

Metrics (apps/stream/metrics.py): written to `PROMETHEUS_MULTIPROC_DIR` when it is set (the
web's `/metrics` shows them), or served on `--metrics-port` (`INBOX_STREAM_METRICS_PORT`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import sys

logger = logging.getLogger("apps.stream")


def raise_fd_limit() -> int:
    """Each connection is a file descriptor: the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


async def serve(host: str, port: int, backlog: int) -> None:
    from .server import Config, StreamServer

    server = StreamServer(Config.from_settings())
    await server.start(host, port, backlog=backlog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info("inbox stream: listening on http://%s:%s (%s)", host, server.port,
                type(loop).__module__.split(".")[0])
    await stop.wait()
    logger.info("inbox stream: stopping; closing %s connection(s)", len(server.streaming))
    await server.close()
    from apps.notifications.instrumentation import mark_process_dead

    mark_process_dead()  # its open-connections gauge leaves the host's sum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.stream", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("INBOX_STREAM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("INBOX_STREAM_PORT", "8001")))
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog (default 4096)")
    parser.add_argument("--metrics-port", type=int,
                        default=int(os.environ.get("INBOX_STREAM_METRICS_PORT", "0")) or None,
                        help="serve Prometheus metrics on this port (default: none; with "
                             "PROMETHEUS_MULTIPROC_DIR the web's /metrics shows them)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")
    import django

    django.setup()
    limit = raise_fd_limit()
    if args.metrics_port:
        from apps.notifications.instrumentation import start_worker_exporter

        start_worker_exporter(args.metrics_port, addr=args.host)
        logger.info("inbox stream: metrics on http://%s:%s/metrics", args.host, args.metrics_port)
    logger.info("inbox stream: file descriptor limit %s", limit)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements.txt
        asyncio.run(serve(args.host, args.port, args.backlog))
    else:
        uvloop.run(serve(args.host, args.port, args.backlog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
