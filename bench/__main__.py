"""`python -m bench [options]` (or `make bench ARGS="..."`): prints one JSON document on stdout;
progress goes to stderr. See bench/runner.py for the phases and bench/naive.py for the
baseline."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .big import BigOptions
from .environment import BENCH_DB_NAME, BENCH_REDIS_DB, BenchSetupError, targets_from
from .phases import NewPhaseOptions
from .processes import ProcessError, log
from .runner import Bench, Options, install_sigterm_handler

PHASES = ("single", "ceiling", "fanout", "priorities", "streams")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return number


def _positive_rate(value: str) -> float:
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number (messages per second)")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "NotifyHub benchmark: accept time of a 1,000-recipient send over real HTTP (gunicorn), "
            "and end-to-end email deliveries per second through the provider sandbox with a real "
            "Celery worker, for the real pipeline and a naive baseline; then SMS (Twilio, sent and "
            "delivered through signed status callbacks) and push (FCM, sent) deliveries per second "
            "through the real pipeline, under the providers' rate limits. Uses its own database "
            f"({BENCH_DB_NAME}, dropped and recreated) on the server of DATABASE_URL and its own "
            f"Redis DB (/{BENCH_REDIS_DB}, flushed) on the server of REDIS_URL. One JSON document "
            "on stdout, progress on stderr."
        ),
    )
    parser.add_argument("--deliveries", type=_positive, default=2000,
                        help="email deliveries per end-to-end phase (default: 2000)")
    parser.add_argument("--accept-runs", type=_positive, default=5,
                        help="measured HTTP accept runs after one warm-up (default: 5)")
    parser.add_argument("--latency-ms", type=_non_negative, default=0,
                        help="simulated provider latency per sandbox request (default: 0)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds each end-to-end phase may take (default: 300)")
    parser.add_argument("--skip-naive", action="store_true",
                        help="measure only the real pipeline (no naive phase, no ratios)")
    channels = parser.add_argument_group(
        "SMS and push (real pipeline only)",
        "The worker applies each provider's rate limit (a token bucket in Redis, burst = one "
        "second's worth): Twilio SMS defaults to 100/s, FCM to 1000/s, so with the defaults the "
        "SMS phase measures the rate limit. Raise it (e.g. --sms-rate 100000) to measure the "
        "pipeline itself.",
    )
    channels.add_argument("--sms-deliveries", type=_positive, default=1000,
                          help="SMS deliveries in the SMS phase (default: 1000)")
    channels.add_argument("--push-deliveries", type=_positive, default=1000,
                          help="push deliveries (one device each) in the push phase (default: 1000)")
    channels.add_argument("--sms-rate", type=_positive_rate, default=None, metavar="N",
                          help="TWILIO_SMS_RATE_PER_SECOND for the worker (default: the settings', 100)")
    channels.add_argument("--push-rate", type=_positive_rate, default=None, metavar="N",
                          help="FCM_RATE_PER_SECOND for the worker (default: the settings', 1000)")
    channels.add_argument("--skip-sms", action="store_true", help="no SMS phase")
    channels.add_argument("--skip-push", action="store_true", help="no push phase")
    channels.add_argument("--channels-only", action="store_true",
                          help="only the SMS and push phases (no accept, email or naive phases; "
                               "their keys are null) and, unless --phases names some, none of "
                               "issue 8's phases")
    new = parser.add_argument_group(
        "issue 8's phases (on the Procfile's process layout: its gunicorn config, its Celery "
        "workers with their queues and concurrency, beat)",
        "single: open-loop single-recipient sends at fixed rates from a separate load generator "
        "(bench/loadgen.py), then CPU per notification of every process; ceiling: the SendGrid "
        "SDK alone from DISPATCH_CONCURRENCY x worker processes threads; fanout: one bulk "
        "request of N items and one send to N inline recipients; priorities: critical/high "
        "sends while a low/normal backlog drains; streams: N inbox SSE connections held (memory), "
        "in-app messages through the API to them (accept → event latency) and the API's "
        "single-send latency with and without them; tracing (only when named in --phases): the single "
        "phase at one rate with tracing off, on (every trace) and on at 10 %, OTLP to a local "
        "sink, CPU per message of each; big (only with --big): reads with 10 million "
        "deliveries stored.",
    )
    new.add_argument("--phases", default=None,
                     help=f"comma-separated subset of {','.join(PHASES)},tracing,big (default: all "
                          "but tracing and big; none with --channels-only)")
    new.add_argument("--skip", default="", help="comma-separated phases to leave out")
    new.add_argument("--rates", default="50,150,300",
                     help="single: requests per second, comma-separated (default: 50,150,300)")
    new.add_argument("--rate-duration", type=float, default=15.0,
                     help="single: seconds per rate (default: 15)")
    new.add_argument("--ceiling-sends", type=_positive, default=None,
                     help="ceiling: SDK calls (default: --deliveries)")
    new.add_argument("--fanout", type=_positive, default=50_000,
                     help="fanout: recipients per request (default: 50000)")
    new.add_argument("--backlog", type=_positive, default=100_000,
                     help="priorities: low/normal backlog deliveries (default: 100000)")
    new.add_argument("--priority-rate", type=_positive_rate, default=4.0,
                     help="priorities: critical+high sends per second (default: 4)")
    new.add_argument("--priority-duration", type=float, default=30.0,
                     help="priorities: seconds of critical/high sends (default: 30)")
    new.add_argument("--tracing-rate", type=_positive_rate, default=50.0,
                     help="tracing: requests per second of each run (default: 50)")
    new.add_argument("--tracing-duration", type=float, default=15.0,
                     help="tracing: seconds of each of its three runs (default: 15)")
    new.add_argument("--phase-timeout", type=float, default=900.0,
                     help="seconds each wait of these phases may take (default: 900)")
    new.add_argument("--streams", type=_positive, default=5000,
                     help="streams: concurrent inbox stream connections (default: 5000)")
    new.add_argument("--stream-rate", type=_positive_rate, default=100.0,
                     help="streams: in-app messages per second to connected recipients (default: 100)")
    new.add_argument("--stream-batch", type=_positive, default=10,
                     help="streams: recipients per in-app request (default: 10); the phase then "
                          "sends the same rate as single-recipient requests too")
    new.add_argument("--stream-duration", type=float, default=20.0,
                     help="streams: seconds of in-app messages (default: 20)")
    new.add_argument("--stream-api-rate", type=_positive_rate, default=20.0,
                     help="streams: single sends per second for the API latency with and without "
                          "streams (default: 20)")
    new.add_argument("--stream-api-duration", type=float, default=15.0,
                     help="streams: seconds of each API latency measurement (default: 15)")
    new.add_argument("--big", action="store_true",
                     help="also the `big` phase: COPY 10 million deliveries, then time the reads")
    new.add_argument("--big-deliveries", type=_positive, default=10_000_000,
                     help="big: deliveries to load (default: 10000000)")
    new.add_argument("--big-per-notification", type=_positive, default=50,
                     help="big: deliveries per notification (default: 50)")
    new.add_argument("--big-reads", type=_positive, default=200,
                     help="big: timed requests per endpoint (default: 200)")
    new.add_argument("--big-reuse", action="store_true",
                     help="big: keep the bench database when it already holds this load (same "
                          "--big-deliveries and --big-per-notification; migrations are applied) "
                          "instead of dropping it and loading again (~6 minutes); only with "
                          "--channels-only --skip-sms --skip-push --phases big")
    new.add_argument("--big-compare-root", default=None, metavar="DIR",
                     help="big: also time a gunicorn running another checkout's code (DIR, e.g. "
                          "`git worktree`/`git archive` of the base commit) on the same rows, in "
                          "blocks of 20 requests alternating with this tree's; reported under "
                          "big.compare")
    parser.add_argument("--smoke", action="store_true",
                        help="every phase but big on a small scale (a few hundred messages, short "
                             "rates), in a few minutes; says nothing about speed")
    parser.add_argument("--db-name", default=BENCH_DB_NAME,
                        help=f"bench database name (default: {BENCH_DB_NAME}; DROPPED at start)")
    parser.add_argument("--redis-db", type=int, default=BENCH_REDIS_DB,
                        help=f"bench Redis database number (default: {BENCH_REDIS_DB}; FLUSHED at start)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.phases is None:
        args.phases = "" if args.channels_only else ",".join(PHASES)
    phases = [p for p in args.phases.split(",") if p]
    skip = {p for p in args.skip.split(",") if p}
    unknown = (set(phases) | skip) - set(PHASES) - {"big", "tracing"}
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    args.phase_list = tuple(p for p in phases if p not in skip and p != "big")
    if "big" in phases and "big" not in skip:
        args.big = True
    try:
        args.rate_list = tuple(float(r) for r in args.rates.split(",") if r)
    except ValueError:
        parser.error("--rates must be numbers separated by commas")
    if not args.rate_list or min(args.rate_list) <= 0:
        parser.error("--rates must be positive numbers")
    if args.smoke:
        args.deliveries, args.accept_runs = min(args.deliveries, 100), 1
        args.sms_deliveries = min(args.sms_deliveries, 50)
        args.push_deliveries = min(args.push_deliveries, 50)
        args.rate_list, args.rate_duration = (10.0, 30.0), 3.0
        args.ceiling_sends = 200
        args.fanout, args.backlog = 300, 300
        args.priority_rate, args.priority_duration = 4.0, 3.0
        args.tracing_rate, args.tracing_duration = 10.0, 3.0
        args.timeout, args.phase_timeout = 120.0, 120.0
        args.streams, args.stream_rate, args.stream_duration = min(args.streams, 200), 20.0, 3.0
        args.stream_batch = min(args.stream_batch, 5)
        args.stream_api_rate, args.stream_api_duration = 10.0, 3.0
    if args.channels_only and args.skip_sms and args.skip_push and not args.phase_list and not args.big:
        parser.error("--channels-only with --skip-sms and --skip-push leaves nothing to run")
    if args.big_reuse and not (args.big and args.channels_only and args.skip_sms
                               and args.skip_push and not args.phase_list):
        parser.error("--big-reuse needs --channels-only --skip-sms --skip-push --phases big "
                     "(the other phases empty the tables)")
    if args.big_compare_root and not Path(args.big_compare_root, "manage.py").is_file():
        parser.error(f"--big-compare-root {args.big_compare_root}: not a NotifyHub checkout")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    options = Options(deliveries=args.deliveries, accept_runs=args.accept_runs,
                      latency_ms=args.latency_ms, timeout=args.timeout, skip_naive=args.skip_naive,
                      sms_deliveries=args.sms_deliveries, push_deliveries=args.push_deliveries,
                      sms_rate=args.sms_rate, push_rate=args.push_rate, skip_sms=args.skip_sms,
                      skip_push=args.skip_push, channels_only=args.channels_only,
                      phases=args.phase_list, smoke=args.smoke,
                      new=NewPhaseOptions(
                          rates=args.rate_list, rate_duration=args.rate_duration,
                          ceiling_sends=args.ceiling_sends or args.deliveries, fanout=args.fanout,
                          backlog=args.backlog, priority_rate=args.priority_rate,
                          priority_duration=args.priority_duration, timeout=args.phase_timeout,
                          streams=args.streams, stream_rate=args.stream_rate,
                          stream_duration=args.stream_duration, stream_batch=args.stream_batch,
                          stream_api_rate=args.stream_api_rate,
                          stream_api_duration=args.stream_api_duration,
                          tracing_rate=args.tracing_rate, tracing_duration=args.tracing_duration),
                      big=BigOptions(deliveries=args.big_deliveries,
                                     per_notification=args.big_per_notification,
                                     reads=args.big_reads, reuse=args.big_reuse,
                                     compare_root=args.big_compare_root) if args.big else None)
    real_stdout = sys.stdout
    try:
        targets = targets_from(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"),
                               db_name=args.db_name, redis_db=args.redis_db)
        # Only the JSON document goes to stdout: anything else printed on the way goes to stderr.
        with (
            contextlib.redirect_stdout(sys.stderr),
            tempfile.TemporaryDirectory(prefix="notifyhub-bench-") as workdir,
            Bench(options, targets, Path(workdir)) as bench,
        ):
            result = bench.run()
    except KeyboardInterrupt:
        log("interrupted; child processes stopped")
        return 130
    except (BenchSetupError, ProcessError, RuntimeError, OSError) as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    json.dump(result, real_stdout, indent=2)
    real_stdout.write("\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
