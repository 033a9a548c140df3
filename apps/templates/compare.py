"""Side-by-side helpers for the admin: sample variables for a preview, per-part diffs."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

# Content fields in the order the admin shows them.
CONTENT_PARTS: tuple[str, ...] = ("subject", "text_body", "html_body", "sms_body", "whatsapp_body",
                                  "whatsapp_content_sid", "push_title", "push_body", "push_data",
                                  "in_app_title", "in_app_body", "in_app_action_url",
                                  "in_app_data")


def sample_variables_for(version: Any, samples: Mapping[str, Any] | None) -> dict[str, Any]:
    """The template's sample variables, plus a `{name}` placeholder for every variable the
    version needs that the samples do not give."""
    out = dict(samples or {})
    for name in version.required_variables:
        out.setdefault(name, "{" + name + "}")
    return out


def part_text(version: Any, part: str) -> str:
    value = getattr(version, part) if version is not None else ""
    if part in ("push_data", "in_app_data"):
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) if value else ""
    return str(value or "")


def content_diff(old: Any, new: Any, *, old_label: str, new_label: str) -> dict[str, list[str]]:
    """Unified diff lines per content part that differs (parts with no change are left out)."""
    diffs: dict[str, list[str]] = {}
    for part in CONTENT_PARTS:
        before, after = part_text(old, part), part_text(new, part)
        if before == after:
            continue
        diffs[part] = list(difflib.unified_diff(
            before.splitlines(), after.splitlines(), fromfile=f"{old_label} {part}",
            tofile=f"{new_label} {part}", lineterm="",
        ))
    return diffs
