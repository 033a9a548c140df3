# Reads stay flat (issue 8): stored per-status counts on the notification, and the indexes that
# page a notification's deliveries. Indexes are built CONCURRENTLY (the deliveries table is the
# big one), so this migration is not atomic; the new indexes exist before the old ones go.

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('clients', '0005_api_key_scopes_mode'),
        ('notifications', '0008_test_mode'),
        ('recipients', '0006_pii_encrypt_rows'),
        ('templates', '0004_active_versions_from_existing'),
    ]

    operations = [
        # Existing notifications keep counts_at NULL: readers aggregate them until their next
        # refresh (no backfill over every delivery at deploy time).
        migrations.AddField(
            model_name='notification',
            name='counts',
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AddField(
            model_name='notification',
            name='counts_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='notification',
            name='counts_stale',
            field=models.BooleanField(default=False, editable=False),
        ),
        AddIndexConcurrently(
            model_name='delivery',
            index=models.Index(fields=['notification', 'created_at', 'id'], name='delivery_notif_order'),
        ),
        AddIndexConcurrently(
            model_name='delivery',
            index=models.Index(fields=['notification', 'status', 'created_at', 'id'], name='delivery_notif_status_order'),
        ),
        # ?channel= on the notification list (partial indexes, one per channel).
        *(AddIndexConcurrently(
            model_name='notification',
            index=models.Index(condition=models.Q(('channels__contains', [channel])), fields=['client', '-created_at'], name=f'notification_client_{channel}'),
        ) for channel in ('email', 'sms', 'whatsapp', 'push')),
        RemoveIndexConcurrently(
            model_name='delivery',
            name='delivery_notification_status',
        ),
        # Drops the plain notification_id index: delivery_notif_order leads with the same column.
        migrations.AlterField(
            model_name='delivery',
            name='notification',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='notifications.notification'),
        ),
    ]
