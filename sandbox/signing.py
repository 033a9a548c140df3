"""ECDSA P-256 keys and signatures in the format SendGrid's Signed Event Webhook uses.

SendGrid signs ``timestamp + raw_body`` (UTF-8) with ECDSA/SHA-256, sends the
DER signature base64-encoded in ``X-Twilio-Email-Event-Webhook-Signature`` and
shows the verification key in its UI as base64 DER SubjectPublicKeyInfo
without PEM armour.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TypeError(f"{path} is not an ECDSA P-256 private key")
    return key


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def write_private_key(key: ec.EllipticCurvePrivateKey, path: str | os.PathLike[str]) -> None:
    """Write ``key`` as PEM to a *new* file created with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_key_pem(key))


def load_or_create_private_key(
    path: str | os.PathLike[str],
) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    """Return ``(key, created)``; an existing file is never overwritten."""
    try:
        key = generate_private_key()
        write_private_key(key, path)
    except FileExistsError:
        return load_private_key(path), False
    return key, True


def public_key_b64(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """Public key as SendGrid displays it: one line of base64 DER SubjectPublicKeyInfo."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return base64.b64encode(der).decode("ascii")


class SendGridSigner:
    """Signs Event Webhook request bodies; usable as a ``callbacks.Signer``."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self.public_key_b64 = public_key_b64(private_key)

    def sign(self, timestamp: str, body: bytes) -> str:
        signature = self._key.sign(timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")

    def headers(self, url: str, body: bytes) -> dict[str, str]:
        """Fresh timestamp + signature headers for one delivery attempt."""
        timestamp = str(int(time.time()))
        return {
            SENDGRID_TIMESTAMP_HEADER: timestamp,
            SENDGRID_SIGNATURE_HEADER: self.sign(timestamp, body),
        }
