from __future__ import annotations

import hmac

from .models import ApiKey
from .services import hash_key, key_prefix


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, with its client, or None. Constant-time compare."""
    if not raw_key or len(raw_key) < 20 or len(raw_key) > 200:
        return None
    key = (
        ApiKey.objects.select_related("client")
        .filter(prefix=key_prefix(raw_key), revoked_at__isnull=True, client__is_active=True)
        .first()
    )
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(raw_key)):
        return None
    return key
