from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

# Support's search by request id (docs/operations.md "Logs"). Not atomic: the index is built
# concurrently, so every service keeps writing audit rows meanwhile.


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('audit', '0001_initial'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='auditlog',
            index=models.Index(fields=['request_id', 'created_at'], name='audit_request_created'),
        ),
    ]
