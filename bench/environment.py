"""Where the benchmark runs: its own PostgreSQL database and Redis database, never the dev ones.

Everything here works before Django is set up: the URLs decided here are exported into the
environment first, and only then is Django configured from them.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg import sql

if TYPE_CHECKING:
    from tests.support.sandbox import SandboxProcess

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:54329/notifyhub"
DEFAULT_REDIS_URL = "redis://127.0.0.1:63799/0"
BENCH_DB_NAME = "notifyhub_bench"
BENCH_REDIS_DB = 14
TEST_REDIS_DB = 15  # notifyhub.settings.test's broker: never ours
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class BenchSetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Targets:
    """The benchmark's own database and Redis database, derived from the dev URLs."""

    database_url: str  # the bench database
    maintenance_url: str  # the `postgres` database on the same server (to drop/create ours)
    db_name: str
    redis_url: str  # the bench Redis database

    def child_env(self) -> dict[str, str]:
        """Variables every process of the benchmark gets (and the bench process itself)."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "CACHE_URL": self.redis_url,
        }


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def targets_from(
    database_url: str | None,
    redis_url: str | None,
    *,
    db_name: str = BENCH_DB_NAME,
    redis_db: int = BENCH_REDIS_DB,
) -> Targets:
    """The bench database/Redis DB on the servers of DATABASE_URL / REDIS_URL."""
    database_url = database_url or DEFAULT_DATABASE_URL
    redis_url = redis_url or DEFAULT_REDIS_URL
    db_parts = urlsplit(database_url)
    if db_parts.scheme not in ("postgres", "postgresql"):
        raise BenchSetupError(f"DATABASE_URL must be a PostgreSQL URL, got scheme {db_parts.scheme!r}")
    source_db = db_parts.path.lstrip("/")
    if not _DB_NAME_RE.match(db_name):
        raise BenchSetupError(f"bad database name {db_name!r} (lower case letters, digits, _)")
    if db_name == source_db or db_name in ("postgres", "template0", "template1"):
        raise BenchSetupError(f"refusing to use database {db_name!r} for the benchmark (it is dropped)")

    redis_parts = urlsplit(redis_url)
    if redis_parts.scheme not in ("redis", "rediss"):
        raise BenchSetupError(f"REDIS_URL must be a redis:// URL, got scheme {redis_parts.scheme!r}")
    source_redis_db = int(redis_parts.path.lstrip("/") or 0)
    if redis_db in (source_redis_db, TEST_REDIS_DB) or not 0 <= redis_db <= 15:
        raise BenchSetupError(
            f"refusing Redis DB {redis_db} for the benchmark (it is flushed; the dev DB is "
            f"{source_redis_db}, the tests use {TEST_REDIS_DB})"
        )
    return Targets(
        database_url=_with_path(database_url, f"/{db_name}"),
        maintenance_url=_with_path(database_url, "/postgres"),
        db_name=db_name,
        redis_url=_with_path(redis_url, f"/{redis_db}"),
    )


def recreate_database(targets: Targets) -> str:
    """Drops and creates the bench database (empty, for repeatable numbers); returns the
    server version."""
    try:
        with psycopg.connect(targets.maintenance_url, autocommit=True, connect_timeout=10) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            name = sql.Identifier(targets.db_name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    except psycopg.Error as exc:
        raise BenchSetupError(f"could not recreate database {targets.db_name!r}: {exc}") from exc
    return version


def server_version(targets: Targets) -> str:
    try:
        with psycopg.connect(targets.maintenance_url, autocommit=True, connect_timeout=10) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        raise BenchSetupError(f"could not reach the server of {targets.db_name!r}: {exc}") from exc


def flush_redis(targets: Targets) -> None:
    client = redis.Redis.from_url(targets.redis_url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


def write_signing_key(directory: Path) -> tuple[Path, str]:
    """An ECDSA P-256 key pair like SendGrid's: (private PEM path, base64 DER public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = directory / "sendgrid_webhook_key.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    os.chmod(path, 0o600)
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    return path, public


def write_fcm_service_account(directory: Path, *, token_uri: str) -> Path:
    """A Google service-account JSON (fresh RSA key) whose `token_uri` is the sandbox's OAuth
    endpoint: the sandbox verifies token requests with it and the worker's pyfcm signs them."""
    from sandbox.service_account import write_service_account

    path = directory / "fcm-service-account.json"
    write_service_account(path, token_uri=token_uri)
    return path


def provider_settings(sandbox: SandboxProcess, public_base_url: str) -> dict[str, str]:
    """The settings (as environment variables) that point every provider SDK of gunicorn and
    the worker at this run's sandbox, and provider callbacks at gunicorn: the same as
    tests/conftest.py's `_sandbox_settings`. `PUBLIC_BASE_URL` must be the URL the sandbox
    calls back (Twilio signs the status callbacks over it)."""
    return {
        "SENDGRID_API_HOST": sandbox.url,
        "TWILIO_API_BASE_URL": sandbox.url,
        "TWILIO_ACCOUNT_SID": sandbox.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": sandbox.twilio_auth_token,
        "FCM_API_BASE_URL": sandbox.url,
        "FCM_SERVICE_ACCOUNT_FILE": sandbox.fcm_service_account_file or "",
        "FCM_PROJECT_ID": sandbox.fcm_project_id,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sandbox.smtp_port),
        "PUBLIC_BASE_URL": public_base_url,
    }
