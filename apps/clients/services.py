"""Writes for clients and API keys."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record

from .models import ApiKey, Client

KEY_PREFIX_LEN = 12  # "nh_" + 9 characters, unique, shown in the admin and logs


def hash_key(raw_key: str) -> str:
    # Keys are 40+ random characters, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_prefix(raw_key: str) -> str:
    return raw_key[:KEY_PREFIX_LEN]


def generate_raw_key() -> str:
    return "nh_" + secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")


@transaction.atomic
def api_key_create(*, client: Client, name: str, raw_key: str | None = None) -> tuple[ApiKey, str]:
    """Creates a key and returns it with its secret: the only time the secret is visible."""
    raw = raw_key or generate_raw_key()
    key = ApiKey.objects.create(
        client=client, name=name, prefix=key_prefix(raw), key_hash=hash_key(raw)
    )
    audit_record(action="api_key.create", client=client, object_type="api_key", object_id=key.pk,
                 changes={"name": name, "prefix": key.prefix})
    return key, raw


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(action="api_key.revoke", client=api_key.client_id, object_type="api_key",
                     object_id=api_key.pk, changes={"name": api_key.name, "prefix": api_key.prefix})
    return api_key
