"""Drops the foreign key's own index on notifications_deliveryevent.delivery_id:
event_delivery_order (delivery_id, id) leads with the same column and serves every lookup by
it, so the single-column index only cost a write per row (and gave the planner a worse choice).
Only the index goes: the state change alone would make Django drop and re-add the foreign key,
which re-validates every row."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0015_delivery_notification_n_distinct'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='deliveryevent',
                    name='delivery',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='notifications.delivery'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "notifications_deliveryevent_delivery_id_dbfa5df8"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "notifications_deliveryevent_delivery_id_dbfa5df8" ON "notifications_deliveryevent" ("delivery_id")',
                ),
            ],
        ),
    ]
