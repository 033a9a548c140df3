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

from .environment import BENCH_DB_NAME, BENCH_REDIS_DB, BenchSetupError, targets_from
from .processes import ProcessError, log
from .runner import Bench, Options, install_sigterm_handler


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
                               "their keys are null)")
    parser.add_argument("--db-name", default=BENCH_DB_NAME,
                        help=f"bench database name (default: {BENCH_DB_NAME}; DROPPED at start)")
    parser.add_argument("--redis-db", type=int, default=BENCH_REDIS_DB,
                        help=f"bench Redis database number (default: {BENCH_REDIS_DB}; FLUSHED at start)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.channels_only and args.skip_sms and args.skip_push:
        parser.error("--channels-only with --skip-sms and --skip-push leaves nothing to run")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    options = Options(deliveries=args.deliveries, accept_runs=args.accept_runs,
                      latency_ms=args.latency_ms, timeout=args.timeout, skip_naive=args.skip_naive,
                      sms_deliveries=args.sms_deliveries, push_deliveries=args.push_deliveries,
                      sms_rate=args.sms_rate, push_rate=args.push_rate, skip_sms=args.skip_sms,
                      skip_push=args.skip_push, channels_only=args.channels_only)
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
