# Consent follows the address (issue 9): a suppression may cover one category only (an email
# one-click unsubscribe), so the unique key gains `category` ("" = the whole channel; every
# existing row). A STOP's row names the one confirmation dispatch lets through. The new
# constraint is added before the old one goes: the table is never without its unique index.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0011_delivery_fewer_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='suppression',
            name='category',
            field=models.CharField(blank=True, default='', max_length=50),
        ),
        migrations.AddField(
            model_name='suppression',
            name='confirmation_delivery',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='notifications.delivery'),
        ),
        migrations.AddIndex(
            model_name='suppression',
            index=models.Index(condition=models.Q(('confirmation_delivery__isnull', False)), fields=['confirmation_delivery'], name='suppression_confirmation'),
        ),
        migrations.AddConstraint(
            model_name='suppression',
            constraint=models.UniqueConstraint(fields=('client', 'channel', 'address_hash', 'category'), name='suppression_unique_address_category'),
        ),
        migrations.RemoveConstraint(
            model_name='suppression',
            name='suppression_unique_address_hash',
        ),
    ]
