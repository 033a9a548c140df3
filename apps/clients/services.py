"""Writes for clients and API keys."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record

from .models import ApiKey, Client, KeyMode, Scope

LIVE_KEY_START = "nh_"
TEST_KEY_START = "nh_test_"
# The unique prefix stored, shown in the admin and logs: "nh_" + 9 random characters for a live
# key; "nh_test_" + 8 for a test key (the marker must not eat the prefix's randomness).
KEY_PREFIX_LEN = 12
TEST_KEY_PREFIX_LEN = 16


class InvalidKey(ValueError):
    pass


def hash_key(raw_key: str) -> str:
    # Keys are 40+ random characters, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_prefix(raw_key: str) -> str:
    length = TEST_KEY_PREFIX_LEN if raw_key.startswith(TEST_KEY_START) else KEY_PREFIX_LEN
    return raw_key[:length]


def generate_raw_key(mode: str = KeyMode.LIVE) -> str:
    # No "_" in the random part: a live key can never look like "nh_test_…".
    random_part = secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    return (TEST_KEY_START if mode == KeyMode.TEST else LIVE_KEY_START) + random_part


def _clean_scopes(scopes: list[str] | None) -> list[str]:
    if scopes is None:
        return [s.value for s in Scope]
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise InvalidKey(f"Unknown scope(s): {', '.join(unknown)}.")
    return [s.value for s in Scope if s.value in scopes]  # canonical order, no repeats


@transaction.atomic
def api_key_create(
    *, client: Client, name: str, raw_key: str | None = None, scopes: list[str] | None = None,
    mode: str = KeyMode.LIVE,
) -> tuple[ApiKey, str]:
    """Creates a key and returns it with its secret: the only time the secret is visible.
    `scopes` defaults to all of them; `mode` is live or test (a test key reads `nh_test_…`)."""
    if mode not in KeyMode.values:
        raise InvalidKey(f"Unknown mode '{mode}'.")
    raw = raw_key or generate_raw_key(mode)
    if raw.startswith(TEST_KEY_START) != (mode == KeyMode.TEST):
        raise InvalidKey("Test keys, and only they, start with 'nh_test_'.")
    key = ApiKey.objects.create(
        client=client, name=name, prefix=key_prefix(raw), key_hash=hash_key(raw),
        scopes=_clean_scopes(scopes), mode=mode,
    )
    audit_record(action="api_key.create", client=client, object_type="api_key", object_id=key.pk,
                 changes={"name": name, "prefix": key.prefix, "mode": key.mode,
                          "scopes": key.scopes})
    return key, raw


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(action="api_key.revoke", client=api_key.client_id, object_type="api_key",
                     object_id=api_key.pk, changes={"name": api_key.name, "prefix": api_key.prefix})
    return api_key


@transaction.atomic
def api_key_scopes_set(*, api_key: ApiKey, scopes: list[str]) -> ApiKey:
    """Changes what a key may do (its mode never changes: create another key instead)."""
    new = _clean_scopes(scopes)
    # The stored value (the admin's form has already put the new one on the instance).
    old = list(ApiKey.objects.select_for_update().values_list("scopes", flat=True)
               .get(pk=api_key.pk))
    if new != old:
        api_key.scopes = new
        api_key.save(update_fields=["scopes"])
        audit_record(action="api_key.update", client=api_key.client_id, object_type="api_key",
                     object_id=api_key.pk,
                     changes={"prefix": api_key.prefix, "scopes": {"from": old, "to": new}})
    return api_key
