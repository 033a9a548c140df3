"""aiohttp application: providers, control/inspection endpoints and the HTML inbox."""

from __future__ import annotations

import html
import json
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from .callbacks import ANSWER_CLASSES
from .config import SandboxConfig
from .emulator import Emulator, SandboxContext
from .fcm import FcmEmulator
from .sendgrid import SendGridEmulator
from .smtp import SmtpEmulator
from .store import ControlError
from .twilio import TwilioEmulator
from .vonage import VonageEmulator

log = logging.getLogger("sandbox")

CTX_KEY = web.AppKey("sandbox_ctx", SandboxContext)
PROVIDERS_KEY = web.AppKey("sandbox_providers", list)
SESSION_KEY = web.AppKey("sandbox_session", aiohttp.ClientSession)

MAX_BODY = 32 * 1024 * 1024  # SendGrid accepts mail up to 30 MB
INBOX_LIMIT = 200
MESSAGE_FILTERS = {"to", "message_id", "provider", "channel"}
CUSTOM_ARG_PREFIX = "custom_arg."


def _providers(app: web.Application) -> list[Emulator]:
    return app[PROVIDERS_KEY]


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


# -- lifecycle -----------------------------------------------------------------


async def _on_startup(app: web.Application) -> None:
    session = aiohttp.ClientSession()
    app[SESSION_KEY] = session
    for provider in _providers(app):
        await provider.start(session)


async def _on_shutdown(app: web.Application) -> None:
    # Release requests held in `timeout` mode so the server can stop promptly.
    app[CTX_KEY].control.release_held()


async def _on_cleanup(app: web.Application) -> None:
    for provider in _providers(app):
        await provider.stop()
    await app[SESSION_KEY].close()


# -- control and inspection ----------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_control(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX_KEY].control.to_dict())


async def post_control(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        changes = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        return _bad_request("body must be a JSON object")
    if not isinstance(changes, dict):
        return _bad_request("body must be a JSON object")
    try:
        ctx.control.update(changes)
    except ControlError as exc:
        return _bad_request(str(exc))
    log.info("control updated: %s", json.dumps(ctx.control.to_dict(), sort_keys=True))
    return web.json_response(ctx.control.to_dict())


async def post_reset(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    ctx.store.clear()
    ctx.stats.reset()
    ctx.control.reset()
    for provider in _providers(request.app):
        provider.reset()
    log.info("sandbox reset")
    return web.json_response({"status": "reset"})


async def list_messages(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    custom_args: dict[str, str] = {}
    filters: dict[str, str] = {}
    for key, value in request.query.items():
        if key.startswith(CUSTOM_ARG_PREFIX) and len(key) > len(CUSTOM_ARG_PREFIX):
            custom_args[key[len(CUSTOM_ARG_PREFIX) :]] = value
        elif key in MESSAGE_FILTERS:
            filters[key] = value
        else:
            allowed = ", ".join(sorted(MESSAGE_FILTERS | {CUSTOM_ARG_PREFIX + "KEY"}))
            return _bad_request(f"unknown filter {key!r}; allowed: {allowed}")
    messages = ctx.store.filter(custom_args=custom_args, **filters)
    return web.json_response({"count": len(messages), "messages": [m.to_dict() for m in messages]})


async def get_message(request: web.Request) -> web.Response:
    message = request.app[CTX_KEY].store.get(request.match_info["id"])
    if message is None:
        return web.json_response({"error": "message not found"}, status=404)
    return web.json_response(message.to_dict())


def _callback_totals(providers: list[Emulator]) -> dict[str, int]:
    callbacks = {"batches_sent": 0, "events_sent": 0, "failures": 0, "dropped": 0, "pending": 0,
                 "retrying": 0,
                 **dict.fromkeys(ANSWER_CLASSES, 0)}
    for provider in providers:
        callbacks["pending"] += provider.pending_events
        for dispatcher in provider.dispatchers:
            for key, value in dispatcher.stats().items():
                callbacks[key] += value
    return callbacks


def stats_snapshot(app: web.Application) -> dict[str, Any]:
    """Global counters as before, plus ``by_provider``: the same counters, ``per_second``,
    ``messages`` and ``callbacks`` for each provider (and provider-specific extras)."""
    ctx = app[CTX_KEY]
    snapshot = ctx.stats.snapshot()
    per_second = snapshot.pop("per_second")
    by_provider = snapshot.pop("by_provider")
    stored: dict[str, int] = {}
    for message in ctx.store:
        stored[message.provider] = stored.get(message.provider, 0) + 1
    for provider in _providers(app):
        entry = by_provider.setdefault(provider.name, {})
        entry["messages"] = stored.get(provider.name, 0)
        entry["callbacks"] = _callback_totals([provider])
        entry.update(provider.extra_stats())
    snapshot["messages"] = len(ctx.store)
    snapshot["callbacks"] = _callback_totals(_providers(app))
    snapshot["per_second"] = per_second
    snapshot["by_provider"] = by_provider
    return snapshot


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(stats_snapshot(request.app))


# -- HTML inbox ----------------------------------------------------------------

_INBOX_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem;margin-bottom:.2rem}
.meta{color:#666;margin-bottom:1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f5f5f5}
tr:hover td{background:#fafafa}
code{font-size:.85rem}
.st-delivered{color:#1a7f37}.st-bounce,.st-failed,.st-undelivered{color:#cf222e}
.st-processed,.st-queued,.st-sent,.st-accepted{color:#9a6700}
.ch{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;background:#eef}
.ch-sms{background:#e6f4ea}.ch-whatsapp{background:#d8f3dc}.ch-push{background:#fff3cd}
"""


async def inbox(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    stats = stats_snapshot(request.app)
    messages = list(ctx.store)[-INBOX_LIMIT:][::-1]
    esc = html.escape
    rows = []
    for m in messages:
        status = m.status or ""
        # Subject for email, title for push, the body's start for SMS/WhatsApp.
        summary = m.subject or (m.text or "")[:80]
        rows.append(
            "<tr>"
            f"<td>{esc(m.received_at)}</td>"
            f'<td><span class="ch ch-{esc(m.channel)}">{esc(m.channel)}</span></td>'
            f"<td>{esc(m.provider)}</td>"
            f"<td>{esc(m.to[:80])}</td>"
            f"<td>{esc(summary)}</td>"
            f'<td class="st-{esc(status)}">{esc(status)}</td>'
            f'<td><a href="/sandbox/messages/{esc(m.id)}"><code>{esc(m.message_id)}</code></a></td>'
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="7">No messages yet.</td></tr>'
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    cb = stats["callbacks"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>NotifyHub provider sandbox</title>
<style>{_INBOX_STYLE}</style></head>
<body>
<h1>NotifyHub provider sandbox</h1>
<div class="meta">{len(ctx.store)} message(s), showing newest {len(messages)} &middot;
requests {stats["requests"]}, accepted {stats["accepted"]}, rejected {stats["rejected"]},
aborted {stats["aborted"]} &middot; callbacks sent {cb["events_sent"]},
pending {cb["pending"]}, failures {cb["failures"]} &middot; {esc(now)} &middot;
<a href="/sandbox/messages">JSON</a> &middot; <a href="/sandbox/stats">stats</a></div>
<table><thead><tr><th>Time</th><th>Channel</th><th>Provider</th><th>To</th>
<th>Subject / text</th><th>Status</th><th>Message id</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""
    return web.Response(text=page, content_type="text/html", charset="utf-8")


# -- factory -------------------------------------------------------------------


def create_app(config: SandboxConfig | None = None) -> web.Application:
    config = config or SandboxConfig.from_env()
    ctx = SandboxContext(config=config)
    app = web.Application(client_max_size=MAX_BODY)
    app[CTX_KEY] = ctx
    providers: list[Emulator] = [
        SendGridEmulator(ctx),
        TwilioEmulator(ctx),
        FcmEmulator(ctx),
        SmtpEmulator(ctx),
        VonageEmulator(ctx),
    ]
    app[PROVIDERS_KEY] = providers
    for provider in providers:
        provider.setup(app)

    app.router.add_get("/", inbox)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/sandbox/control", get_control)
    app.router.add_post("/sandbox/control", post_control)
    app.router.add_post("/sandbox/reset", post_reset)
    app.router.add_get("/sandbox/messages", list_messages)
    app.router.add_get("/sandbox/messages/{id}", get_message)
    app.router.add_get("/sandbox/stats", get_stats)

    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
