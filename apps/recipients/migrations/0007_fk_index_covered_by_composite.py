"""Drops the foreign key's own index on recipients_recipient.client_id:
recipient_unique_external_id (client_id, external_id) leads with the same column and serves
every lookup by it, so the single-column index only cost a write per row (and gave the planner
a worse choice). Only the index goes: the state change alone would make Django drop and re-add
the foreign key, which re-validates every row."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clients', '0008_client_inbox'),
        ('recipients', '0006_pii_encrypt_rows'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='recipient',
                    name='client',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='recipients', to='clients.client'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "recipients_recipient_client_id_fbbf9705"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "recipients_recipient_client_id_fbbf9705" ON "recipients_recipient" ("client_id")',
                ),
            ],
        ),
    ]
