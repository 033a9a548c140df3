"""Browser origins (`scheme://host[:port]`) as clients list them for the inbox API's CORS
(`Client.inbox_allowed_origins`). Pure functions: no model is imported here."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str:
    """The origin as a browser sends it: lower-case scheme and host, the port only when it is
    not the scheme's default, no trailing slash. "" when `value` is not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return ""
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return ""
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def validate_origins(value: Any) -> list[str]:
    """Problems with a `Client.inbox_allowed_origins` value ([] is fine)."""
    if not isinstance(value, list | tuple):
        return ["Must be a list of origins such as https://app.example.com."]
    problems = []
    for origin in value:
        if not isinstance(origin, str) or not normalise_origin(origin):
            problems.append(f"'{origin}' is not an origin (scheme://host[:port], no path).")
    return problems


def normalised_origins(value: Any) -> list[str]:
    """The valid origins of a stored list, normalised, in order, without repeats."""
    if not isinstance(value, list | tuple):
        return []
    out = (normalise_origin(o) for o in value if isinstance(o, str))
    return list(dict.fromkeys(o for o in out if o))
