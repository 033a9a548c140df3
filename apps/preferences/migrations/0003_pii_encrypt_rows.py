"""Encrypts the actor of existing consent records and fills its hash, 1,000 rows per
committed batch (non-atomic: a migration that stopped part-way resumes where rows are still
plaintext; the application reads plaintext rows meanwhile)."""

from typing import Any

from django.db import migrations

from apps.core.pii_rotation import decrypt_model, reencrypt_model


def encrypt_rows(apps: Any, schema_editor: Any) -> None:
    reencrypt_model(apps.get_model("preferences", "ConsentRecord"))


def decrypt_rows(apps: Any, schema_editor: Any) -> None:
    decrypt_model(apps.get_model("preferences", "ConsentRecord"))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("preferences", "0002_pii_encrypted_actor"),
    ]

    operations = [
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=True),
    ]
