"""The id an erased recipient is left with: `erased-<32 hex>`, unique, never an address.

A module without imports, so the send path (redrive, receipts) can ask "is this recipient
erased?" without depending on the privacy app's services."""

from __future__ import annotations

import re
import uuid

ERASED_PREFIX = "erased-"
_TOMBSTONE = re.compile(r"^erased-[0-9a-f]{32}$")


def new_tombstone() -> str:
    return f"{ERASED_PREFIX}{uuid.uuid4().hex}"


def is_tombstone(external_id: str) -> bool:
    return bool(_TOMBSTONE.match(external_id or ""))
