"""Google service-account key files for the FCM sandbox (stdlib + cryptography only,
so the ``fcm-service-account`` CLI starts fast)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_PROJECT_ID = "notifyhub-sandbox"
DEFAULT_TOKEN_URI = "http://127.0.0.1:8025/token"  # noqa: S105 - a URL


def service_account_info(
    *, project_id: str = DEFAULT_PROJECT_ID, token_uri: str = DEFAULT_TOKEN_URI
) -> dict[str, str]:
    """A Google service-account key (JSON) with a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    email = f"sandbox@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(9 * 10**20) + 10**20),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": (
            "https://www.googleapis.com/robot/v1/metadata/x509/" + email.replace("@", "%40")
        ),
        "universe_domain": "googleapis.com",
    }


def write_service_account(
    path: str | os.PathLike[str],
    *,
    project_id: str = DEFAULT_PROJECT_ID,
    token_uri: str = DEFAULT_TOKEN_URI,
) -> bool:
    """Create ``path`` (mode 0600) unless it exists; True if it was created."""
    info = service_account_info(project_id=project_id, token_uri=token_uri)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    return True


class ServiceAccount:
    """The parts of a service-account JSON the sandbox needs to verify assertions."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
        if missing:
            raise ValueError(f"{path}: not a service-account key (missing {', '.join(missing)})")
        key = serialization.load_pem_private_key(info["private_key"].encode("ascii"), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"{path}: private_key is not an RSA key")
        self.path = str(path)
        self.client_email: str = info["client_email"]
        self.project_id: str = info.get("project_id") or ""
        self.private_key_id: str | None = info.get("private_key_id")
        self.token_uri: str = info["token_uri"]
        self.public_key = key.public_key()
        self.fingerprint = hashlib.sha256(info["private_key"].encode("ascii")).digest()
