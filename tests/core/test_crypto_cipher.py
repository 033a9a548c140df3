"""The PII cipher built once per key (apps.core.crypto.FernetKey): its tokens are Fernet
tokens, both ways, so values written before and after it read the same."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet, InvalidToken

from apps.core.crypto import FernetKey, Keyring


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 33, 111, 112, 127, 128, 254, 1000, 300_000])
def test_tokens_are_fernet_tokens_both_ways(size: int) -> None:
    key = Fernet.generate_key()
    ours, theirs = FernetKey(key), Fernet(key)
    data = os.urandom(size)

    assert theirs.decrypt(ours.encrypt(data)) == data
    assert ours.decrypt(theirs.encrypt(data)) == data


def test_the_same_inputs_give_fernets_exact_token() -> None:
    key = Fernet.generate_key()
    iv = os.urandom(16)

    assert FernetKey(key).encrypt(b"jane@example.com", at=1_700_000_000, iv=iv) == (
        Fernet(key)._encrypt_from_parts(b"jane@example.com", 1_700_000_000, iv))


@pytest.mark.parametrize("size", [16, 5000])
def test_the_same_inputs_give_fernets_exact_token_short_or_long(size: int) -> None:
    key = Fernet.generate_key()
    iv, data = os.urandom(16), os.urandom(size)

    assert FernetKey(key).encrypt(data, at=1_700_000_000, iv=iv) == (
        Fernet(key)._encrypt_from_parts(data, 1_700_000_000, iv))


def test_a_tampered_token_or_another_key_is_refused() -> None:
    key = Fernet.generate_key()
    token = bytearray(FernetKey(key).encrypt(b"+14155550100"))
    token[40] = ord("A") if token[40] != ord("A") else ord("B")

    with pytest.raises(InvalidToken):
        FernetKey(key).decrypt(bytes(token))
    with pytest.raises(InvalidToken):
        FernetKey(Fernet.generate_key()).decrypt(FernetKey(key).encrypt(b"x"))
    with pytest.raises(InvalidToken):
        FernetKey(key).decrypt(b"not a token")


def test_the_key_ring_reads_tokens_of_an_older_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    written_before = Fernet(old).encrypt(b"jane@example.com").decode()

    ring = Keyring((new, old), "hash-key")

    assert ring.decrypt(written_before) == "jane@example.com"
    assert Fernet(new).decrypt(ring.encrypt("ada@example.com").encode()) == b"ada@example.com"
