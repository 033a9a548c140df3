# Opt-out confirmations (issue 9): per-client texts / the `confirmed` consent action.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('preferences', '0003_pii_encrypt_rows'),
    ]

    operations = [
        migrations.AlterField(
            model_name='consentrecord',
            name='action',
            field=models.CharField(choices=[('opt_in', 'Opt In'), ('opt_out', 'Opt Out'), ('update', 'Update'), ('confirmed', 'Confirmed')], max_length=10),
        ),
    ]
