"""PII at rest: what the database holds, key rotation, hash-key rotation, the production
settings' refusal to start without keys, and the masking of addresses in the logs."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection

from apps.core.crypto import TOKEN_PREFIX, PIIDecryptionError, encrypt, keyring, pii_batch, pii_hash
from apps.core.logging import RedactPIIFilter
from apps.notifications.models import Suppression
from apps.notifications.services import notification_send
from apps.recipients.models import Recipient
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
EMAIL = "Jane.Doe@Example.com"
PHONE = "+14155550123"


def raw(table: str, column: str, pk: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def test_the_database_holds_ciphertext_and_a_hash_never_the_address(api: Any, client_tenant: Any,
                                                                      email_template: Any) -> None:
    response = api.put("/api/v1/recipients/jane", {"email": EMAIL, "phone": PHONE,
                                                    "whatsapp": PHONE}, format="json")
    assert response.status_code == 201
    assert response.json()["email"] == EMAIL  # the API answers in plaintext
    recipient = Recipient.objects.get(external_id="jane")
    for column, value in (("email", EMAIL), ("phone", PHONE), ("whatsapp", PHONE)):
        stored = raw("recipients_recipient", column, recipient.pk)
        assert stored.startswith(TOKEN_PREFIX)
        assert value not in stored and value.lower() not in stored
        assert raw("recipients_recipient", f"{column}_hash", recipient.pk) == pii_hash(value)
    notification = notification_send(client=client_tenant, recipients=["jane"],
                                     template_id="welcome", variables={"name": "Jane"}).notification
    delivery = notification.deliveries.get()
    assert delivery.address == EMAIL
    stored = raw("notifications_delivery", "address", delivery.pk)
    assert stored.startswith(TOKEN_PREFIX) and EMAIL not in stored


def test_values_and_values_list_decrypt(client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="jane", email=EMAIL, phone="")
    assert list(Recipient.objects.values_list("email", "phone")) == [(EMAIL, "")]
    assert Recipient.objects.values("email").get()["email"] == EMAIL


def test_no_address_stays_empty_so_has_an_email_is_a_plain_query(client_tenant: Any) -> None:
    RecipientFactory(client=client_tenant, external_id="nomail", email="", phone=PHONE)
    RecipientFactory(client=client_tenant, external_id="mail", email=EMAIL)
    assert raw("recipients_recipient", "email",
               Recipient.objects.get(external_id="nomail").pk) == ""
    assert list(Recipient.objects.exclude(email="").values_list("external_id", flat=True)) == ["mail"]
    assert Recipient.objects.get(external_id="nomail").email_hash == ""


def test_comparing_an_encrypted_column_with_a_value_is_refused(client_tenant: Any) -> None:
    with pytest.raises(FieldError, match="encrypted"):
        list(Recipient.objects.filter(email=EMAIL))
    with pytest.raises(FieldError):
        list(Recipient.objects.filter(email__icontains="jane"))


def test_lookups_by_hash_ignore_email_case_and_phone_separators(client_tenant: Any) -> None:
    jane = RecipientFactory(client=client_tenant, email=EMAIL, phone=PHONE)
    assert Recipient.objects.get(email_hash=pii_hash("jane.doe@example.com")) == jane
    assert Recipient.objects.get(phone_hash=pii_hash("+1 (415) 555-0123")) == jane


def test_a_token_is_never_encrypted_twice(client_tenant: Any) -> None:
    token = encrypt(EMAIL)
    jane = RecipientFactory(client=client_tenant, email=token)
    jane.refresh_from_db()
    assert jane.email == EMAIL
    assert raw("recipients_recipient", "email", jane.pk) == token


def test_update_bulk_update_and_upsert_keep_the_hashes_in_step(client_tenant: Any) -> None:
    jane = RecipientFactory(client=client_tenant, external_id="jane", email=EMAIL, phone=PHONE)
    Recipient.objects.filter(pk=jane.pk).update(email="new@example.com", phone="")
    jane.refresh_from_db()
    assert (jane.email, jane.email_hash, jane.phone_hash) == (
        "new@example.com", pii_hash("new@example.com"), "")
    jane.whatsapp = PHONE
    Recipient.objects.bulk_update([jane], ["whatsapp"])
    assert Recipient.objects.get(whatsapp_hash=pii_hash(PHONE)) == jane
    Recipient.objects.update_or_create(client=client_tenant, external_id="jane",
                                       defaults={"email": "third@example.com"})
    assert Recipient.objects.get(email_hash=pii_hash("third@example.com")) == jane


def test_an_erased_suppression_address_keeps_blocking_by_its_hash(client_tenant: Any) -> None:
    suppression = Suppression.objects.create(client=client_tenant, channel="email", address=EMAIL,
                                             reason="bounced")
    Suppression.objects.filter(pk=suppression.pk).update(address="")
    suppression.refresh_from_db()
    assert (suppression.address, suppression.address_hash) == ("", pii_hash(EMAIL))


def test_rotation_rewrites_every_row_under_the_new_key(settings: Any, client_tenant: Any,
                                                       email_template: Any) -> None:
    settings.PII_ENCRYPTION_KEYS = [KEY_A]
    jane = RecipientFactory(client=client_tenant, external_id="jane", email=EMAIL, phone=PHONE)
    delivery = notification_send(client=client_tenant, recipients=["jane"], template_id="welcome",
                                 variables={"name": "J"}).notification.deliveries.get()
    Suppression.objects.create(client=client_tenant, channel="sms", address=PHONE, reason="landline")
    before = raw("recipients_recipient", "email", jane.pk)

    settings.PII_ENCRYPTION_KEYS = [KEY_B, KEY_A]  # a new primary; the old one still decrypts
    out = io.StringIO()
    call_command("rotate_pii_keys", "--batch-size", "1", stdout=out)
    assert "recipients.Recipient: 1/1 rows (100 %)" in out.getvalue()
    assert raw("recipients_recipient", "email", jane.pk) != before

    settings.PII_ENCRYPTION_KEYS = [KEY_B]  # the old key is gone: everything still reads
    jane.refresh_from_db()
    delivery.refresh_from_db()
    assert (jane.email, jane.phone, delivery.address) == (EMAIL, PHONE, EMAIL)
    assert Suppression.objects.get().address == PHONE

    again = io.StringIO()  # idempotent: nothing left to rewrite
    call_command("rotate_pii_keys", stdout=again)
    assert "0 rewritten" in again.getvalue() and "1 rewritten" not in again.getvalue()


def test_a_value_no_key_decrypts_is_an_error_not_ciphertext(settings: Any, client_tenant: Any) -> None:
    settings.PII_ENCRYPTION_KEYS = [KEY_A]
    jane = RecipientFactory(client=client_tenant, email=EMAIL)
    settings.PII_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(PIIDecryptionError):
        jane.refresh_from_db()


def test_rehash_after_a_new_hash_key_makes_lookups_work_again(settings: Any, client_tenant: Any) -> None:
    jane = RecipientFactory(client=client_tenant, email=EMAIL, phone=PHONE)
    settings.PII_HASH_KEY = "a-brand-new-hash-key-of-at-least-32-characters"
    assert not Recipient.objects.filter(phone_hash=pii_hash(PHONE)).exists()
    call_command("rotate_pii_keys", "--rehash", stdout=io.StringIO())
    assert Recipient.objects.get(phone_hash=pii_hash(PHONE)) == jane
    assert Recipient.objects.get(email_hash=pii_hash(EMAIL)) == jane


def test_rows_from_before_encryption_are_read_then_encrypted_by_the_migration_step(
    client_tenant: Any,
) -> None:
    jane = RecipientFactory(client=client_tenant, email=EMAIL, phone=PHONE)
    with connection.cursor() as cursor:  # as 0005 left a row: plaintext, no hashes
        cursor.execute("UPDATE recipients_recipient SET email = %s, phone = %s, email_hash = '', "
                       "phone_hash = '' WHERE id = %s", [EMAIL, PHONE, jane.pk])
    jane.refresh_from_db()
    assert jane.email == EMAIL  # plaintext reads as it is meanwhile
    from apps.core.pii_rotation import reencrypt_model  # what migration 0006 runs

    report = reencrypt_model(Recipient)
    assert report.rewritten == 1
    assert raw("recipients_recipient", "email", jane.pk).startswith(TOKEN_PREFIX)
    assert Recipient.objects.get(phone_hash=pii_hash(PHONE)) == jane


PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "notifyhub.settings.production",
    "SECRET_KEY": "x" * 50, "SENDGRID_API_KEY": "k", "SENDGRID_WEBHOOK_PUBLIC_KEY": "k",
    "PUBLIC_BASE_URL": "https://notify.example.com",
}


def start_production(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PII_")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        env={**base, **PRODUCTION_ENV, **env}, capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2], check=False,
    )


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"PII_HASH_KEY": "h" * 40}, "KeyError: 'PII_ENCRYPTION_KEYS'"),
        ({"PII_ENCRYPTION_KEYS": KEY_A}, "KeyError: 'PII_HASH_KEY'"),
        ({"PII_ENCRYPTION_KEYS": "not-a-key", "PII_HASH_KEY": "h" * 40}, "is not a Fernet key"),
        ({"PII_ENCRYPTION_KEYS": "bm90aWZ5aHViLWxvY2FsLWRldi1waWkta2V5LTAwMDE=",
          "PII_HASH_KEY": "h" * 40}, "local development key"),
        ({"PII_ENCRYPTION_KEYS": KEY_A, "PII_HASH_KEY": "short"}, "at least 32 characters"),
    ],
)
def test_production_refuses_to_start_without_proper_keys(env: dict[str, str], error: str) -> None:
    result = start_production(**env)
    assert result.returncode != 0
    assert error in result.stderr


def test_production_starts_with_its_own_keys() -> None:
    result = start_production(PII_ENCRYPTION_KEYS=f"{KEY_B},{KEY_A}", PII_HASH_KEY="h" * 40)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_the_configured_log_handlers_mask_addresses() -> None:
    handlers = [h for h in logging.getLogger().handlers
                if any(isinstance(f, RedactPIIFilter) for f in h.filters)]
    assert handlers, "settings.LOGGING puts RedactPIIFilter on the root handlers"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        log = logging.getLogger("apps.test_pii")
        log.warning("could not reach %s or %s", "jane.doe@example.com", "whatsapp:+14155550123")
        try:
            raise ValueError("The 'To' number +14155550123 is not a valid phone number.")
        except ValueError:
            log.exception("send failed for bob@example.org")
    finally:
        handler.setStream(previous)
    output = stream.getvalue()
    assert "j***@example.com" in output and "whatsapp:+14***23" in output
    assert "b***@example.org" in output and "+14***23 is not a valid" in output
    for address in ("jane.doe@example.com", "+14155550123", "bob@example.org"):
        assert address not in output


def test_inside_a_batch_an_address_is_encrypted_once_and_forgotten_after() -> None:
    ring = keyring()
    with pii_batch():
        first = encrypt("batch@example.com")
        ring._memo.clear()  # the per-process memo aside: the batch remembers
        assert encrypt("batch@example.com") == first
    ring._memo.clear()
    assert encrypt("batch@example.com") != first  # a new token: the batch is gone
