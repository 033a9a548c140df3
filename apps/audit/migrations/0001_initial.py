import django.contrib.postgres.indexes
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

# Append-only: an UPDATE of a row is refused by the database itself, whoever asks. Retention
# deletes old rows; a future erasure that must rewrite rows sets
# `SET LOCAL notifyhub.audit_allow_update = 'on'` in its transaction.
FORBID_UPDATE = """
CREATE FUNCTION audit_log_forbid_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('notifyhub.audit_allow_update', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_auditlog is append-only: rows cannot be updated'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_auditlog
    FOR EACH ROW EXECUTE FUNCTION audit_log_forbid_update();
"""
ALLOW_UPDATE = """
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_auditlog;
DROP FUNCTION IF EXISTS audit_log_forbid_update();
"""


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('clients', '0003_delivery_policy'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditLog',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('actor_type', models.CharField(choices=[('user', 'User'), ('api_key', 'Api Key'), ('system', 'System'), ('inbound', 'Inbound')], max_length=10)),
                ('actor_id', models.CharField(blank=True, max_length=64)),
                ('actor_display', models.CharField(blank=True, max_length=200)),
                ('action', models.CharField(max_length=64)),
                ('object_type', models.CharField(blank=True, max_length=40)),
                ('object_id', models.CharField(blank=True, max_length=64)),
                ('recipient_external_id', models.CharField(blank=True, max_length=200)),
                ('notification_id', models.UUIDField(blank=True, null=True)),
                ('changes', models.JSONField(blank=True, default=dict)),
                ('ip', models.GenericIPAddressField(blank=True, null=True)),
                ('user_agent', models.CharField(blank=True, max_length=512)),
                ('request_id', models.CharField(blank=True, max_length=64)),
                ('client', models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='clients.client')),
            ],
            options={
                'verbose_name': 'audit log entry',
                'verbose_name_plural': 'audit log',
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['client', 'created_at'], name='audit_client_created'), models.Index(fields=['recipient_external_id', 'created_at'], name='audit_recipient_created'), models.Index(condition=models.Q(('notification_id__isnull', False)), fields=['notification_id'], name='audit_notification'), models.Index(fields=['actor_id', 'created_at'], name='audit_actor_created'), models.Index(fields=['action', 'created_at'], name='audit_action_created'), models.Index(fields=['object_id', 'created_at'], name='audit_object_created'), django.contrib.postgres.indexes.BrinIndex(fields=['created_at'], name='audit_created_brin')],
            },
        ),
        migrations.RunSQL(FORBID_UPDATE, ALLOW_UPDATE),
    ]
