"""aiohttp application: providers, control/inspection endpoints and the HTML inbox."""

from __future__ import annotations

import html
import json
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from .config import SandboxConfig
from .provider import Provider, SandboxContext
from .sendgrid import SendGridProvider
from .store import ControlError

log = logging.getLogger("sandbox")

CTX_KEY = web.AppKey("sandbox_ctx", SandboxContext)
PROVIDERS_KEY = web.AppKey("sandbox_providers", list)
SESSION_KEY = web.AppKey("sandbox_session", aiohttp.ClientSession)

MAX_BODY = 32 * 1024 * 1024  # SendGrid accepts mail up to 30 MB
INBOX_LIMIT = 200
MESSAGE_FILTERS = {"to", "message_id", "provider"}
CUSTOM_ARG_PREFIX = "custom_arg."


def _providers(app: web.Application) -> list[Provider]:
    return app[PROVIDERS_KEY]


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


# -- lifecycle -----------------------------------------------------------------


async def _on_startup(app: web.Application) -> None:
    session = aiohttp.ClientSession()
    app[SESSION_KEY] = session
    for provider in _providers(app):
        for dispatcher in provider.dispatchers:
            dispatcher.start(session)


async def _on_cleanup(app: web.Application) -> None:
    for provider in _providers(app):
        provider.delayed.cancel_all()
        for dispatcher in provider.dispatchers:
            await dispatcher.stop()
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


def stats_snapshot(app: web.Application) -> dict[str, Any]:
    ctx = app[CTX_KEY]
    snapshot = ctx.stats.snapshot()
    per_second = snapshot.pop("per_second")
    callbacks = {"batches_sent": 0, "events_sent": 0, "failures": 0, "dropped": 0, "pending": 0}
    for provider in _providers(app):
        callbacks["pending"] += provider.pending_events
        for dispatcher in provider.dispatchers:
            for key, value in dispatcher.stats().items():
                callbacks[key] += value
    snapshot["messages"] = len(ctx.store)
    snapshot["callbacks"] = callbacks
    snapshot["per_second"] = per_second
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
.st-delivered{color:#1a7f37}.st-bounce{color:#cf222e}.st-processed{color:#9a6700}
"""


async def inbox(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    stats = stats_snapshot(request.app)
    messages = list(ctx.store)[-INBOX_LIMIT:][::-1]
    esc = html.escape
    rows = []
    for m in messages:
        status = m.status or ""
        rows.append(
            "<tr>"
            f"<td>{esc(m.received_at)}</td>"
            f"<td>{esc(m.provider)}</td>"
            f"<td>{esc(m.to)}</td>"
            f"<td>{esc(m.subject or '')}</td>"
            f'<td class="st-{esc(status)}">{esc(status)}</td>'
            f'<td><a href="/sandbox/messages/{esc(m.id)}"><code>{esc(m.message_id)}</code></a></td>'
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="6">No messages yet.</td></tr>'
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
<table><thead><tr><th>Time</th><th>Provider</th><th>To</th><th>Subject</th><th>Status</th>
<th>Message id</th></tr></thead>
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
    providers: list[Provider] = [SendGridProvider(ctx)]
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
    app.on_cleanup.append(_on_cleanup)
    return app
