"""One suppression per (client, channel, address hash). Addresses that differed only in the
case of an email (one hash now) keep their oldest row."""

from django.db import migrations, models

DEDUPLICATE = """
DELETE FROM notifications_suppression AS a
USING notifications_suppression AS b
WHERE a.client_id = b.client_id AND a.channel = b.channel AND a.address_hash = b.address_hash
  AND a.id > b.id
"""


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0006_pii_encrypt_rows"),
    ]

    operations = [
        migrations.RunSQL(DEDUPLICATE, migrations.RunSQL.noop, elidable=True),
        migrations.AddConstraint(
            model_name="suppression",
            constraint=models.UniqueConstraint(fields=("client", "channel", "address_hash"),
                                               name="suppression_unique_address_hash"),
        ),
    ]
