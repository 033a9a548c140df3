# Fewer indexes on notifications_delivery: each one is written on every status update of a
# delivery (~3 per delivery). client_id and recipient_id are the leading columns of
# delivery_client_status and delivery_recipient_created; template_version_id is null on most
# rows, so its index becomes partial. notifications_notification.client_id likewise leads
# notification_client_created. Not atomic: the new index is built concurrently first.

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('clients', '0005_api_key_scopes_mode'),
        ('notifications', '0010_accept_jobs'),
        ('recipients', '0006_pii_encrypt_rows'),
        ('templates', '0004_active_versions_from_existing'),
    ]

    operations = [
        migrations.AlterField(
            model_name='notification',
            name='client',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='clients.client'),
        ),
        AddIndexConcurrently(
            model_name='delivery',
            index=models.Index(condition=models.Q(('template_version__isnull', False)), fields=['template_version'], name='delivery_own_version'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='client',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='clients.client'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='recipient',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='recipients.recipient'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='template_version',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='templates.templateversion'),
        ),
    ]
