"""PII at rest: Fernet encryption under a rotatable key list, and a keyed hash for lookups.

`PII_ENCRYPTION_KEYS` is a list of Fernet keys, newest first: the first (primary) encrypts
every new value, all of them decrypt. Rotating = putting a new key first, running
`manage.py rotate_pii_keys` (re-encrypts every stored value under it), then dropping the old
key. Fernet is randomised, so equality lookups go through `pii_hash`: HMAC-SHA256 with
`PII_HASH_KEY` over the normalised address (lower-cased email, phone without separators).

The empty string is never encrypted or hashed (stays ""), so "has an email" stays a cheap
`~Q(email="")`. A value that already is a Fernet token is stored as it is, never encrypted
twice. Model fields that use this live in apps/core/encrypted_fields.py.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

# Every Fernet token starts with the version byte 0x80 and a 64-bit timestamp whose high bytes
# are zero until 2106: base64url "gAAAAA".
TOKEN_PREFIX = "gAAAAA"  # noqa: S105 - a format marker, not a secret
# Plaintext → token (under the primary key) memos: a value written again (an upserted
# recipient, its address copied to its deliveries) reuses its token instead of paying for
# another encryption (~10 µs). Inside `pii_batch()` (one accept) the memo holds the whole
# batch and goes with it; outside, a per-process memo is bounded (cleared when full).
MEMO_SIZE = 10_000
_batch_memo: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "pii_batch_memo", default=None)
_PHONE_SEPARATORS = re.compile(r"[\s().\-]")


class PIIDecryptionError(Exception):
    """A stored value is a Fernet token that no configured key decrypts."""


def parse_fernet_keys(raw: str | list[str] | tuple[str, ...]) -> list[str]:
    """Comma-separated (or listed) Fernet keys → list; ImproperlyConfigured unless each is a
    valid key (32 url-safe base64-encoded bytes) and there is at least one."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    keys = [k.strip() for k in items if k.strip()]
    if not keys:
        raise ImproperlyConfigured("PII_ENCRYPTION_KEYS is empty: set at least one Fernet key.")
    for position, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"PII_ENCRYPTION_KEYS: key #{position + 1} is not a Fernet key (32 url-safe "
                "base64-encoded bytes; make one with `python -c \"from cryptography.fernet import "
                "Fernet; print(Fernet.generate_key().decode())\"`)."
            ) from exc
    return keys


def normalise_address(value: str) -> str:
    """The form an address is hashed in: emails lower-cased, phone numbers without spaces,
    dashes, dots or parentheses (E.164 as stored: "+14155550100")."""
    value = value.strip()
    if "@" in value:
        return value.lower()
    return _PHONE_SEPARATORS.sub("", value) if _PHONE_SEPARATORS.search(value) else value


# Up to this many bytes (after padding) CBC is chained in Python over a reused AES context;
# above, one CBC context per value is cheaper.
_CHAINED_MAX = 128


class FernetKey:
    """Fernet (the spec: version 0x80, timestamp, IV, AES-128-CBC with PKCS7, HMAC-SHA256;
    tokens interchangeable with `cryptography.fernet.Fernet`), with the cipher built once per
    key instead of once per value: an AES block context per thread is reused and CBC is
    chained here, block by block (addresses are one to three blocks). ~5 times cheaper per value
    than Fernet, which builds a Cipher, a padder and an HMAC object for every call. A long
    value (a fan-out slice's payload: hundreds of KB) goes through one CBC context instead:
    chaining 16-byte blocks in Python costs ~0.3 s per 200 KB."""

    def __init__(self, key: str | bytes) -> None:
        raw = base64.urlsafe_b64decode(key)
        if len(raw) != 32:
            raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
        self._aes_key = raw[16:]
        self._mac = hmac.new(raw[:16], digestmod=hashlib.sha256)  # copied per value
        self._local = threading.local()

    def _contexts(self) -> tuple[Any, Any]:
        contexts = getattr(self._local, "contexts", None)
        if contexts is None:
            cipher = Cipher(algorithms.AES(self._aes_key), modes.ECB())  # noqa: S305 - CBC chained below
            contexts = self._local.contexts = (cipher.encryptor(), cipher.decryptor())
        return contexts

    def encrypt(self, data: bytes, *, at: int | None = None, iv: bytes | None = None) -> bytes:
        iv = iv or os.urandom(16)
        pad = 16 - len(data) % 16
        padded = data + bytes([pad]) * pad
        if len(padded) > _CHAINED_MAX:
            cbc = Cipher(algorithms.AES(self._aes_key), modes.CBC(iv)).encryptor()
            ciphertext = cbc.update(padded) + cbc.finalize()
            basic = (b"\x80" + (int(time.time()) if at is None else at).to_bytes(8, "big") + iv
                     + ciphertext)
            return base64.urlsafe_b64encode(basic + self._sign(basic))
        encryptor, _ = self._contexts()
        previous = int.from_bytes(iv, "big")
        blocks = []
        for start in range(0, len(padded), 16):
            block = (int.from_bytes(padded[start:start + 16], "big") ^ previous).to_bytes(16, "big")
            out = encryptor.update(block)
            blocks.append(out)
            previous = int.from_bytes(out, "big")
        basic = (b"\x80" + (int(time.time()) if at is None else at).to_bytes(8, "big") + iv
                 + b"".join(blocks))
        return base64.urlsafe_b64encode(basic + self._sign(basic))

    def _sign(self, data: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(data)
        return mac.digest()

    def decrypt(self, token: bytes) -> bytes:
        try:
            data = base64.urlsafe_b64decode(token)
        except (TypeError, binascii.Error) as exc:
            raise InvalidToken from exc
        if len(data) < 57 or data[0] != 0x80 or (len(data) - 57) % 16:
            raise InvalidToken
        basic, mac = data[:-32], data[-32:]
        if not hmac.compare_digest(self._sign(basic), mac):
            raise InvalidToken
        body = basic[25:]
        if len(body) > _CHAINED_MAX:
            cbc = Cipher(algorithms.AES(self._aes_key), modes.CBC(basic[9:25])).decryptor()
            padded = cbc.update(body) + cbc.finalize()
        else:
            _, decryptor = self._contexts()
            previous = int.from_bytes(basic[9:25], "big")
            plain = []
            for start in range(0, len(body), 16):
                block = body[start:start + 16]
                plain.append((int.from_bytes(decryptor.update(block), "big") ^ previous)
                             .to_bytes(16, "big"))
                previous = int.from_bytes(block, "big")
            padded = b"".join(plain)
        pad = padded[-1] if padded else 0
        if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
            raise InvalidToken
        return padded[:-pad]


class Keyring:
    """The configured keys: encrypt, decrypt, rotate, hash."""

    def __init__(self, keys: tuple[str, ...], hash_key: str) -> None:
        self.fernets = [Fernet(k) for k in keys]  # for rotation (apps/core/pii_rotation.py)
        self.keys = [FernetKey(k) for k in keys]
        self.primary = self.keys[0]
        self.multi = MultiFernet(self.fernets)
        self.hash_key = hash_key.encode()
        self._memo: dict[str, str] = {}

    def _remember(self, plaintext: str, token: str) -> None:
        batch = _batch_memo.get()
        if batch is not None:
            batch[plaintext] = token
            return
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[plaintext] = token

    def encrypt(self, value: str) -> str:
        if not value:
            return value
        batch = _batch_memo.get()
        token = (batch.get(value) if batch is not None else None) or self._memo.get(value)
        if token is not None:
            return token
        if value.startswith(TOKEN_PREFIX) and self._decrypts(value):
            return value  # already encrypted (read back raw): never twice
        token = self.primary.encrypt(value.encode()).decode()
        self._remember(value, token)
        return token

    def _decrypts(self, token: str) -> bool:
        data = token.encode()
        for key in self.keys:
            try:
                key.decrypt(data)
            except InvalidToken:
                continue
            return True
        return False

    def decrypt(self, value: str) -> str:
        """The plaintext of a token; a value that is not a token (a row written before
        encryption was turned on) is returned as it is."""
        if not value or not value.startswith(TOKEN_PREFIX):
            return value
        data = value.encode()
        for position, key in enumerate(self.keys):
            try:
                plaintext = key.decrypt(data).decode()
            except InvalidToken:
                continue
            if position == 0:
                self._remember(plaintext, value)
            return plaintext
        raise PIIDecryptionError(
            "A stored value could not be decrypted with any key in PII_ENCRYPTION_KEYS "
            "(was a key removed before `manage.py rotate_pii_keys` finished?)."
        )

    def hash(self, value: str) -> str:
        if not value:
            return ""
        return hmac.digest(self.hash_key, normalise_address(value).encode(), "sha256").hex()


@contextlib.contextmanager
def pii_batch() -> Iterator[None]:
    """Within it, every value encrypted or decrypted (under the primary key) is remembered
    until it ends: a recipient's address copied onto its deliveries is encrypted once."""
    if _batch_memo.get() is not None:  # nested: the outer batch remembers
        yield
        return
    reset = _batch_memo.set({})
    try:
        yield
    finally:
        _batch_memo.reset(reset)


_current: Keyring | None = None


def keyring() -> Keyring:
    """The key ring of the current settings, built once (reading settings costs more than a
    hash); rebuilt when a test overrides PII_ENCRYPTION_KEYS or PII_HASH_KEY."""
    global _current
    ring = _current
    if ring is None:
        keys = tuple(parse_fernet_keys(settings.PII_ENCRYPTION_KEYS))
        if not settings.PII_HASH_KEY:
            raise ImproperlyConfigured("PII_HASH_KEY is empty.")
        ring = _current = Keyring(keys, settings.PII_HASH_KEY)
    return ring


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    global _current
    if setting in ("PII_ENCRYPTION_KEYS", "PII_HASH_KEY"):
        _current = None


def encrypt(value: str) -> str:
    return keyring().encrypt(value)


def decrypt(value: str) -> str:
    return keyring().decrypt(value)


def pii_hash(value: str | None) -> str:
    """HMAC-SHA256 (hex) of the normalised address, "" for no address: what `*_hash` columns
    hold and what lookups by address compare."""
    return keyring().hash(value or "")
