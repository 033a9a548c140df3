"""Jinja2 rendering in a sandbox: undefined variables fail, HTML is autoescaped, compiled
templates are cached per version (versions are immutable, so the cache never goes stale).

The environments and their guards are in `environment.py`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes

from .environment import (
    MAX_OUTPUT_CHARS,
    html_env,
    text_env,
    unknown_names,
    unsafe_access,
    unsupported_tags,
)

# Names every render gets from NotifyHub itself, so they are not required from the sender.
# Email content also gets the recipient's own links (`LINK_NAMES`, for a footer): the
# unsubscribe link of the message's category (which lands on the preference center, offering
# that unsubscribe first; "" for a critical category) and the preference center.
LINK_NAMES = frozenset({"unsubscribe_url", "preferences_url"})
BUILTIN_NAMES = frozenset({"recipient"}) | LINK_NAMES

# Every channel a version can hold content for, in display order.
CHANNELS: tuple[str, ...] = ("email", "sms", "whatsapp", "push", "in_app")

# The version fields that are template sources (push_data values are sources too).
SOURCE_FIELDS: tuple[str, ...] = ("subject", "text_body", "html_body", "sms_body",
                                  "whatsapp_body", "push_title", "push_body", "in_app_title",
                                  "in_app_body", "in_app_action_url")


class RenderError(Exception):
    """A template could not be parsed or rendered. `part` names the field (`html_body`,
    `push_data.url`) or the rendered part (`email.subject`) when known."""

    def __init__(self, message: str, *, part: str = "") -> None:
        super().__init__(message)
        self.part = part


class UnsafeTemplateError(RenderError):
    """A source the sandbox would refuse whatever the variables (`x.__class__`, `d.update()`)."""


class MissingVariablesError(RenderError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"Missing template variables: {', '.join(names)}.")
        self.names = names


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def source_parts(
    *, subject: str = "", text_body: str = "", html_body: str = "", sms_body: str = "",
    whatsapp_body: str = "", push_title: str = "", push_body: str = "",
    push_data: Mapping[str, Any] | None = None, in_app_title: str = "", in_app_body: str = "",
    in_app_action_url: str = "", in_app_data: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Every template source of a version's content, by field name (`push_data.<key>`,
    `in_app_data.<key>`: in-app data's string values only)."""
    parts = {"subject": subject, "text_body": text_body, "html_body": html_body,
             "sms_body": sms_body, "whatsapp_body": whatsapp_body, "push_title": push_title,
             "push_body": push_body, "in_app_title": in_app_title, "in_app_body": in_app_body,
             "in_app_action_url": in_app_action_url}
    parts.update({f"push_data.{key}": str(value) for key, value in (push_data or {}).items()})
    parts.update({f"in_app_data.{key}": value for key, value in (in_app_data or {}).items()
                  if isinstance(value, str)})
    return parts


def required_variables(parts: Mapping[str, str]) -> list[str]:
    """The variables a version's sources read (sorted, without built-ins), after checking every
    source compiles: syntax, unknown filters/tests, unsupported tags, and nothing the sandbox
    would refuse whatever the variables (UnsafeTemplateError).

    Raises RenderError naming the part (`html_body`, `push_data.url`) and the line."""
    names: set[str] = set()
    for part, source in parts.items():
        if not source:
            continue
        env = html_env if part == "html_body" else text_env
        try:
            ast = env.parse(source)
            refused = unsupported_tags(ast)
            if refused:
                raise RenderError(
                    f"Template syntax error in {part}: {', '.join(refused)} is not supported "
                    "in NotifyHub templates.", part=part,
                )
            unknown = unknown_names(ast, env)
            if unknown:
                raise RenderError(f"Template syntax error in {part}: {'; '.join(unknown)}.", part=part)
            unsafe = unsafe_access(ast, env)
            if unsafe:
                raise UnsafeTemplateError(
                    f"{part} can never render in the template sandbox: {'; '.join(unsafe)}.",
                    part=part)
            env.compile(ast)
            names |= meta.find_undeclared_variables(ast)
        except TemplateSyntaxError as exc:
            raise RenderError(
                f"Template syntax error in {part}: line {exc.lineno}: {exc.message}", part=part
            ) from exc
        except TemplateError as exc:
            raise RenderError(f"Template syntax error in {part}: {exc}", part=part) from exc
    return sorted(names - BUILTIN_NAMES)


def template_variables(*sources: str) -> list[str]:
    """The variables a set of template sources reads (sorted), excluding built-ins.

    Raises RenderError for a syntax error, with the line."""
    return required_variables({f"source {i + 1}": s for i, s in enumerate(sources)})


@lru_cache(maxsize=2048)
def _compiled(version_id: str, part: str, source: str, html: bool) -> Any:
    env = html_env if html else text_env
    return env.from_string(source)


def render_part(version_id: str, part: str, source: str, context: dict[str, Any], *, html: bool) -> str:
    if not source:
        return ""
    try:
        chunks: list[str] = []
        size = 0
        for chunk in _compiled(version_id, part, source, html).generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderError(
                    f"Could not render {part}: output longer than {MAX_OUTPUT_CHARS} characters.",
                    part=part,
                )
            chunks.append(chunk)
        return "".join(chunks)
    except RenderError:
        raise
    except TemplateError as exc:
        raise RenderError(f"Could not render {part}: {exc}", part=part) from exc
    except Exception as exc:
        raise RenderError(f"Could not render {part}: {type(exc).__name__}", part=part) from exc


@dataclass(frozen=True)
class RenderedMessage:
    """A version's content for one channel, rendered for one recipient."""

    subject: str = ""  # email subject, push title
    text: str = ""  # email text part, SMS / WhatsApp body, push body
    html: str = ""
    # Push data payload (string values); in-app data (string values rendered, others kept).
    data: dict[str, Any] | None = None
    action_url: str = ""  # in-app: where the message leads


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
    if channel == "in_app":
        return {"subject": version.in_app_title or version.push_title or version.subject,
                "text": version.in_app_body or version.push_body or version.text_body,
                "action_url": version.in_app_action_url}
    return {}


def has_content_for(version: Any, channel: str) -> bool:
    if channel == "whatsapp" and version.whatsapp_content_sid:
        return True
    if channel == "push" and version.push_data:
        return True
    if channel == "in_app" and (version.in_app_title or version.in_app_data):
        return True
    sources = channel_sources(version, channel)
    return any(sources.get(part) for part in ("text", "html"))


def has_own_content_for(version: Any, channel: str) -> bool:
    """The version has content written for this channel (not only a fallback from another)."""
    own = {
        "email": version.subject or version.text_body or version.html_body,
        "sms": version.sms_body,
        "whatsapp": version.whatsapp_body or version.whatsapp_content_sid,
        "push": version.push_title or version.push_body or version.push_data,
        "in_app": version.in_app_title or version.in_app_body or version.in_app_data,
    }
    return bool(own.get(channel))


def is_safe_action_url(value: str, *, template: bool = False) -> bool:
    """An in-app action URL a page may put in a link: http(s), or a path on the page's own
    site (never `javascript:` and the like). `template`: a source starting with a variable is
    decided when rendered."""
    url = value.strip()
    if template and url.startswith("{{"):
        return True
    lowered = url.lower()
    return (lowered.startswith(("https://", "http://"))
            or (url.startswith("/") and not url.startswith("//") and "\\" not in url))


_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def _safe_or_empty(url: str) -> str:
    url = url.strip()
    return url if url and is_safe_action_url(url) else ""


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
    if channel == "in_app":
        data = {
            str(key): (render_part(vid, f"in_app.data.{key}", value, context, html=False)
                       if isinstance(value, str) else value)
            for key, value in (version.in_app_data or {}).items()
        }
    # A subject/title is one line: a variable cannot add header lines to it.
    subject = _LINE_BREAKS.sub(" ", parts.get("subject", "")).strip()
    return RenderedMessage(subject=subject, text=parts.get("text", ""),
                           html=parts.get("html", ""), data=data,
                           action_url=_safe_or_empty(parts.get("action_url", "")))


@lru_cache(maxsize=2048)
def _renders_alike(version_id: str, channel: str, sources: tuple[str, ...]) -> bool:
    for source in sources:
        if not source:
            continue
        try:
            ast = text_env.parse(source)
        except TemplateError:
            return False  # rendering reports it, every time
        if meta.find_undeclared_variables(ast) & {"recipient", *LINK_NAMES}:
            return False
        if any(node.name == "random" for node in ast.find_all(nodes.Filter)):
            return False
    return True


def reads_links(version: Any, channel: str) -> frozenset[str]:
    """Which of `LINK_NAMES` this version's content for `channel` reads (dispatch computes
    only those)."""
    return _reads_links(str(version.id), channel, tuple(channel_sources(version, channel).values()))


@lru_cache(maxsize=2048)
def _reads_links(version_id: str, channel: str, sources: tuple[str, ...]) -> frozenset[str]:
    names: set[str] = set()
    for source in sources:
        if source:
            with contextlib.suppress(TemplateError):  # rendering reports it
                names |= meta.find_undeclared_variables(text_env.parse(source)) & LINK_NAMES
    return frozenset(names)


def renders_alike(version: Any, channel: str) -> bool:
    """True when this version's content for `channel` never reads the recipient (nor draws
    at random): every recipient of one notification gets the same rendered message, so a
    chunk renders it once (dispatch's per-chunk memo)."""
    sources = tuple(channel_sources(version, channel).values())
    if channel == "push" and version.push_data:
        sources += tuple(str(value) for value in version.push_data.values())
    if channel == "in_app" and version.in_app_data:
        sources += tuple(v for v in version.in_app_data.values() if isinstance(v, str))
    return _renders_alike(str(version.id), channel, sources)


# --- preview -------------------------------------------------------------------------------

def preview_channels(version: Any, channels: Iterable[str] = ()) -> list[str]:
    """The channels worth previewing for a version: the template's channels plus any channel the
    version has its own content for, in `CHANNELS` order, leaving out those it cannot send."""
    wanted = set(channels) | {c for c in CHANNELS if has_own_content_for(version, c)}
    return [c for c in CHANNELS if c in wanted and has_content_for(version, c)]


def sample_recipient(locale: str) -> dict[str, Any]:
    return {"id": "preview-recipient", "locale": locale, "timezone": "UTC", "attributes": {}}


def preview_context(version: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The render context for a preview; raises MissingVariablesError (names, sorted)."""
    missing = [name for name in version.required_variables if name not in variables]
    if missing:
        raise MissingVariablesError(missing)
    links = {name: f"https://notifyhub.example/{name.removesuffix('_url')}/preview/"
             for name in LINK_NAMES}
    return {"recipient": sample_recipient(version.locale), **links, **variables}


def preview_channel(version: Any, channel: str, context: dict[str, Any]) -> dict[str, Any]:
    """One channel's rendered parts, named as the API shows them."""
    message = render_for_channel(version, channel, context)
    if channel == "email":
        return {"subject": message.subject, "text": message.text, "html": message.html}
    if channel == "sms":
        return {"body": message.text}
    if channel == "whatsapp":
        return {"body": message.text, "content_sid": version.whatsapp_content_sid}
    if channel == "in_app":
        return {"title": message.subject, "body": message.text,
                "action_url": message.action_url, "data": message.data or {}}
    return {"title": message.subject, "body": message.text, "data": message.data or {}}


def preview(version: Any, variables: Mapping[str, Any], *,
            channels: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Every channel's rendered parts for `variables` (see `preview_channels`): email
    subject/text/html, sms body, whatsapp body (+ content_sid), push title/body/data, in-app
    title/body/action_url/data.

    Raises MissingVariablesError naming the variables the version needs and did not get, or
    RenderError naming the part that failed."""
    context = preview_context(version, variables)
    return {c: preview_channel(version, c, context) for c in preview_channels(version, channels)}
