"""Jinja2 rendering in a sandbox: undefined variables fail, HTML is autoescaped, compiled
templates are cached per version (versions are immutable, so the cache never goes stale)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Names every render gets from NotifyHub itself, so they are not required from the sender.
BUILTIN_NAMES = frozenset({"recipient"})

_text_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class RenderError(Exception):
    pass


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def template_variables(*sources: str) -> list[str]:
    """The variables a set of template sources reads (sorted), excluding built-ins.

    Raises RenderError for a syntax error, with the line."""
    names: set[str] = set()
    for source in sources:
        if not source:
            continue
        try:
            names |= meta.find_undeclared_variables(_text_env.parse(source))
        except TemplateError as exc:
            raise RenderError(f"Template syntax error: {exc}") from exc
    return sorted(names - BUILTIN_NAMES)


@lru_cache(maxsize=2048)
def _compiled(version_id: str, part: str, source: str, html: bool) -> Any:
    env = _html_env if html else _text_env
    return env.from_string(source)


def render_part(version_id: str, part: str, source: str, context: dict[str, Any], *, html: bool) -> str:
    if not source:
        return ""
    try:
        return str(_compiled(version_id, part, source, html).render(context))
    except TemplateError as exc:
        raise RenderError(f"Could not render {part}: {exc}") from exc
    except Exception as exc:
        raise RenderError(f"Could not render {part}: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class RenderedMessage:
    """A version's content for one channel, rendered for one recipient."""

    subject: str = ""  # email subject, push title
    text: str = ""  # email text part, SMS / WhatsApp body, push body
    html: str = ""
    data: dict[str, str] | None = None  # push data payload


def channel_sources(version: Any, channel: str) -> dict[str, str]:
    """Which template source feeds which part of a channel's message (with fallbacks: an SMS
    without its own body uses the email text, WhatsApp falls back to the SMS body …)."""
    if channel == "email":
        return {"subject": version.subject, "text": version.text_body, "html": version.html_body}
    if channel == "sms":
        return {"text": version.sms_body or version.text_body}
    if channel == "whatsapp":
        return {"text": version.whatsapp_body or version.sms_body or version.text_body}
    if channel == "push":
        return {"subject": version.push_title or version.subject,
                "text": version.push_body or version.sms_body or version.text_body}
    return {}


def has_content_for(version: Any, channel: str) -> bool:
    if channel == "whatsapp" and version.whatsapp_content_sid:
        return True
    if channel == "push" and version.push_data:
        return True
    sources = channel_sources(version, channel)
    return any(sources.get(part) for part in ("text", "html"))


def render_for_channel(version: Any, channel: str, context: dict[str, Any]) -> RenderedMessage:
    vid = str(version.id)
    sources = channel_sources(version, channel)
    parts = {
        name: render_part(vid, f"{channel}.{name}", source, context, html=(name == "html"))
        for name, source in sources.items()
    }
    data = None
    if channel == "push" and version.push_data:
        data = {
            str(key): render_part(vid, f"push.data.{key}", str(value), context, html=False)
            for key, value in version.push_data.items()
        }
    return RenderedMessage(
        subject=parts.get("subject", "").strip(), text=parts.get("text", ""),
        html=parts.get("html", ""), data=data,
    )
