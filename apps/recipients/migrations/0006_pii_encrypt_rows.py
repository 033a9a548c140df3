"""Encrypts the addresses of existing recipients and fills their hashes, 1,000 rows per
committed batch (non-atomic: a migration that stopped part-way resumes where rows are still
plaintext; the application reads plaintext rows meanwhile)."""

from typing import Any

from django.db import migrations

from apps.core.pii_rotation import decrypt_model, reencrypt_model


def encrypt_rows(apps: Any, schema_editor: Any) -> None:
    reencrypt_model(apps.get_model("recipients", "Recipient"))


def decrypt_rows(apps: Any, schema_editor: Any) -> None:
    decrypt_model(apps.get_model("recipients", "Recipient"))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("recipients", "0005_pii_encrypted_columns"),
    ]

    operations = [
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=True),
    ]
