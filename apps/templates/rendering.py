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
