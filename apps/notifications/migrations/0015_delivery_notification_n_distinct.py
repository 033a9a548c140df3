"""The planner's estimate of a notification's deliveries: 20, not 1.

Most notifications have one delivery, so PostgreSQL's statistics say `notification_id = X`
matches about one row. That is wrong for exactly the notifications that matter, a new send to
50,000 recipients, and with a one-row estimate the status refresh's probe
(`WHERE notification_id = X AND status = S LIMIT 1`, status.py) took the smaller
(notification, created_at, id) index and filtered every delivery of the notification on
status: 11 scans of all 50,000 rows per refresh, under the notification's row lock, so every
chunk of a large send waited for it (docs/operations.md, "Seventh round of issue 8's work").
A fixed estimate of 20 deliveries per notification (`n_distinct = -0.05`: distinct values are
5 % of the rows, whatever the table's size) makes the (notification, status, …) index the
cheaper path for a status probe; reads that page a notification's deliveries still use the
(notification, created_at, id) index, which gives their order. It applies from the next
ANALYZE, which the migration runs.
"""

from django.db import migrations

SET = """
ALTER TABLE notifications_delivery ALTER COLUMN notification_id SET (n_distinct = -0.05);
ANALYZE notifications_delivery;
"""
RESET = "ALTER TABLE notifications_delivery ALTER COLUMN notification_id RESET (n_distinct);"


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0014_channel_in_app"),
    ]

    operations = [migrations.RunSQL(SET, RESET)]
