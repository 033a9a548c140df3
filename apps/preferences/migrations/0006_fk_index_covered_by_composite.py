"""Drops the foreign key's own index on preferences_preferenceprofile.client_id:
prefprofile_client_updated (client_id, updated_at DESC) leads with the same column and serves
every lookup by it, so the single-column index only cost a write per row (and gave the planner
a worse choice). Only the index goes: the state change alone would make Django drop and re-add
the foreign key, which re-validates every row."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clients', '0008_client_inbox'),
        ('preferences', '0005_consent_source_preference_center'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='preferenceprofile',
                    name='client',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clients.client'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "preferences_preferenceprofile_client_id_66c37d05"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "preferences_preferenceprofile_client_id_66c37d05" ON "preferences_preferenceprofile" ("client_id")',
                ),
            ],
        ),
    ]
