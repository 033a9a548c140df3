# Opt-out confirmations (issue 9): per-client texts / the `confirmed` consent action.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clients', '0005_api_key_scopes_mode'),
    ]

    operations = [
        migrations.AddField(
            model_name='client',
            name='sms_opt_out_confirmation',
            field=models.CharField(blank=True, help_text='The one SMS confirming a STOP (no marketing); empty: the service default.', max_length=320),
        ),
        migrations.AddField(
            model_name='client',
            name='whatsapp_opt_out_confirmation',
            field=models.CharField(blank=True, help_text='The one WhatsApp message confirming a STOP; empty: the service default.', max_length=320),
        ),
    ]
