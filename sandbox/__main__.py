"""Command line: ``python -m sandbox [serve|keygen|pubkey|fcm-service-account] ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, SandboxConfig
from .service_account import DEFAULT_PROJECT_ID, DEFAULT_TOKEN_URI, ServiceAccount, write_service_account
from .signing import load_or_create_private_key, load_private_key, public_key_b64

SUBCOMMANDS = ("serve", "keygen", "pubkey", "fcm-service-account")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=(
            "NotifyHub provider sandbox: SendGrid v3 Mail Send, Twilio Messages and Vonage Messages "
            "(SMS, WhatsApp), FCM HTTP v1 and an SMTP server."
        ),
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the sandbox HTTP server (default)")
    serve.add_argument("--host", help="bind address (env SANDBOX_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env SANDBOX_PORT, default 8025)")
    serve.add_argument(
        "--smtp-port", type=int, help="SMTP server port (env SANDBOX_SMTP_PORT, default 2525; 0 disables)"
    )

    keygen = sub.add_parser(
        "keygen",
        help="create a P-256 signing key if missing and print its SendGrid-style public key",
    )
    keygen.add_argument("--out", required=True, type=Path, help="private key PEM path")

    pubkey = sub.add_parser("pubkey", help="print the SendGrid-style public key of a PEM key")
    pubkey.add_argument("--key-file", required=True, type=Path, help="private key PEM path")

    account = sub.add_parser(
        "fcm-service-account",
        help="create a Google service-account JSON (fresh RSA key) for FCM if PATH is missing",
    )
    account.add_argument("--out", required=True, type=Path, help="service-account JSON path")
    account.add_argument(
        "--token-uri", default=None, help=f"OAuth token endpoint (default {DEFAULT_TOKEN_URI})"
    )
    account.add_argument("--project-id", default=None, help=f"project id (default {DEFAULT_PROJECT_ID})")
    return parser


def _setup_logging(level: str) -> None:
    from apps.core.logging import RedactPIIURLFilter

    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # As in NotifyHub's own processes: no address or phone number in any line, even one that
    # slipped through unmasked (percent-encoded ones included).
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactPIIURLFilter())


def _access_logger_class() -> type:
    """aiohttp access lines with the URL masked (query values, address-like path segments)."""
    from aiohttp.abc import AbstractAccessLogger

    from apps.core.logging import mask_url, outside_django_segment

    class MaskedAccessLogger(AbstractAccessLogger):
        def log(self, request: Any, response: Any, time: float) -> None:
            url = mask_url(request.path_qs, frozenset(), outside_django_segment)
            self.logger.info('%s "%s %s HTTP/%d.%d" %d %s %.3fs', request.remote, request.method,
                             url, request.version.major, request.version.minor,
                             response.status, response.body_length, time)

    return MaskedAccessLogger


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .server import create_app

    try:
        config = SandboxConfig.from_env(host=args.host, port=args.port, smtp_port=args.smtp_port)
    except ConfigError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level)
    # aiohttp logs access lines under aiohttp.access; keep them for DEBUG only.
    access_log = logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None
    app = create_app(config)
    logging.getLogger("sandbox").info("sandbox listening on http://%s:%d", config.host, config.port)
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        access_log=access_log,
        access_log_class=_access_logger_class(),
        print=None,
        shutdown_timeout=2.0,
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    try:
        key, created = load_or_create_private_key(args.out)
    except (OSError, ValueError, TypeError) as exc:
        print(f"sandbox keygen: {exc}", file=sys.stderr)
        return 1
    state = "created" if created else "kept existing"
    print(f"sandbox keygen: {state} {args.out}", file=sys.stderr)
    print(public_key_b64(key))
    return 0


def _pubkey(args: argparse.Namespace) -> int:
    try:
        key = load_private_key(args.key_file)
    except (OSError, ValueError, TypeError) as exc:
        print(f"sandbox pubkey: {exc}", file=sys.stderr)
        return 1
    print(public_key_b64(key))
    return 0


def _fcm_service_account(args: argparse.Namespace) -> int:
    try:
        created = write_service_account(
            args.out,
            project_id=args.project_id or DEFAULT_PROJECT_ID,
            token_uri=args.token_uri or DEFAULT_TOKEN_URI,
        )
        account = ServiceAccount(args.out)
    except (OSError, ValueError, TypeError) as exc:
        print(f"sandbox fcm-service-account: {exc}", file=sys.stderr)
        return 1
    state = "created" if created else "kept existing"
    print(
        f"sandbox fcm-service-account: {state} {args.out} ({account.client_email}, "
        f"project {account.project_id}, token_uri {account.token_uri})",
        file=sys.stderr,
    )
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `serve` is the default subcommand, also when only options are given.
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)
    handlers = {
        "serve": _serve,
        "keygen": _keygen,
        "pubkey": _pubkey,
        "fcm-service-account": _fcm_service_account,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
