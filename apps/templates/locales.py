"""Locale tags: one spelling stored, any spelling accepted (`fr_ca`, `FR-CA` → `fr-CA`)."""

from __future__ import annotations

import re
from functools import lru_cache

LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"
_LOCALE = re.compile(LOCALE_PATTERN)


def is_valid_locale(value: str) -> bool:
    return bool(value) and len(value) <= 15 and bool(_LOCALE.match(value.strip()))


@lru_cache(maxsize=1024)
def normalize_locale(value: str) -> str:
    """BCP 47 casing with `-`: language lower case, script title case, region upper case
    (`zh_hant_tw` → `zh-Hant-TW`, `es-419` stays). Unrecognised input is returned stripped."""
    parts = [p for p in re.split(r"[-_]", (value or "").strip()) if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


@lru_cache(maxsize=1024)
def locale_key(value: str) -> str:
    """The case-insensitive key locales are compared by (`fr-ca`)."""
    return normalize_locale(value).lower()


@lru_cache(maxsize=1024)
def locale_chain(value: str) -> tuple[str, ...]:
    """Keys from the most to the least specific: `fr-CA` → (`fr-ca`, `fr`)."""
    parts = locale_key(value).split("-") if value else []
    return tuple("-".join(parts[:n]) for n in range(len(parts), 0, -1))
