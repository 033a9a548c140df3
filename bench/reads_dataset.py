"""Loads a big read dataset with generate_series (issue 8, "reads stay flat").

    DATABASE_URL=… DJANGO_SETTINGS_MODULE=notifyhub.settings.local \
        python -m bench.reads_dataset --notifications 200000 --deliveries 10000000

Client "big" gets `--notifications` notifications (of which `--large` have 50,000 deliveries
each) and `--deliveries` deliveries in all, spread over 100,000 recipients; a second client
gets 10 % more of each so reads are measured on a shared table. Every delivery has one
event; the counts are stored as notifications_refresh_status leaves them.
Prints the API keys (live, test) of the big client.
"""

from __future__ import annotations

import argparse
import os
import time

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notifications", type=int, default=200_000)
    parser.add_argument("--deliveries", type=int, default=10_000_000)
    parser.add_argument("--large", type=int, default=10, help="notifications of 50,000")
    parser.add_argument("--recipients", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")
    django.setup()
    from django.db import connection

    from apps.clients.models import Client
    from apps.clients.services import api_key_create
    from apps.templates.models import Template
    from apps.templates.services import template_version_create

    for slug, share in (("big", 1.0), ("other", 0.1)):
        t0 = time.monotonic()
        client = Client.objects.create(name=slug, slug=slug)
        template = Template.objects.create(client=client, key="welcome", name="Welcome",
                                           channels=["email", "sms"])
        version = template_version_create(template=template, subject="Hi {{ name }}",
                                          text_body="Hi", html_body="<p>Hi</p>", sms_body="Hi")
        n_notif = int(args.notifications * share)
        n_large = int(args.large * share)
        n_deliv = int(args.deliveries * share)
        n_rec = int(args.recipients * share)
        per_small = max(1, (n_deliv - n_large * 50_000) // max(1, n_notif - n_large))
        with connection.cursor() as cur:
            cur.execute("""
                CREATE TEMP TABLE gen_r AS
                SELECT g - 1 AS k, gen_random_uuid() AS id FROM generate_series(1, %s) g""",
                        [n_rec])
            cur.execute("""
                INSERT INTO recipients_recipient (id, external_id, email, phone, whatsapp, locale,
                    timezone, attributes, created_at, updated_at, client_id, email_hash,
                    phone_hash, whatsapp_hash)
                SELECT id, 'user_' || k, repeat('x', 120), '', '', 'en', 'UTC', '{}', now(),
                       now(), %s, md5(k::text), '', ''
                FROM gen_r""", [client.id])
            # Notifications: one per minute backwards from now; the first n_large are large.
            # 1 % are test mode, channel mix: 70 % email, 20 % sms, 10 % both.
            cur.execute("""
                CREATE TEMP TABLE gen_n AS
                SELECT g AS n, gen_random_uuid() AS id,
                       now() - make_interval(secs => g * 30) AS created_at,
                       CASE WHEN g <= %(large)s THEN 50000 ELSE %(per)s END AS size,
                       (g %% 100 = 7) AS is_test,
                       CASE WHEN g %% 10 < 7 THEN '["email"]' WHEN g %% 10 < 9 THEN '["sms"]'
                            ELSE '["email", "sms"]' END::jsonb AS channels,
                       CASE WHEN g %% 50 = 3 THEN 'partially_failed' WHEN g %% 97 = 5 THEN 'failed'
                            WHEN g < 20 THEN 'processing' ELSE 'completed' END AS status
                FROM generate_series(1, %(n)s) g""",
                        {"large": n_large, "per": per_small, "n": n_notif})
            cur.execute("""
                INSERT INTO notifications_notification (id, idempotency_key, request_hash,
                    variables, channels, priority, category, metadata, status, recipient_count,
                    created_at, updated_at, completed_at, client_id, template_version_id, is_test,
                    counts, counts_at, counts_stale)
                SELECT id, NULL, '', '{}', channels, 'normal', 'transactional', '{}', status, size,
                       created_at, created_at, created_at, %s, %s, is_test, '{}', NULL, false
                FROM gen_n""", [client.id, version.id])
            cur.execute("""
                INSERT INTO notifications_delivery (id, notification_id, client_id, recipient_id,
                    channel, priority, status, template_version_id, address, attempts, provider,
                    provider_message_id, error_code, error_message, is_test, created_at,
                    updated_at, sent_at, delivered_at, completed_at, due_at, lease_until, segments)
                SELECT gen_random_uuid(), n.id, %s, r.id,
                       CASE WHEN n.channels ? 'email' AND (i %% 2 = 0 OR NOT n.channels ? 'sms')
                            THEN 'email' ELSE 'sms' END,
                       'normal',
                       CASE WHEN i %% 40 = 1 THEN 'bounced' WHEN i %% 97 = 2 THEN 'failed'
                            WHEN n.status = 'processing' AND i %% 3 = 0 THEN 'queued'
                            ELSE 'delivered' END,
                       NULL, repeat('g', 140), 1, 'sendgrid', 'm' || i, '', '', n.is_test,
                       n.created_at + make_interval(secs => i / 1000.0), n.created_at,
                       n.created_at, n.created_at, n.created_at, NULL, NULL, NULL
                FROM gen_n n CROSS JOIN generate_series(1, n.size) i
                JOIN gen_r r ON r.k = (n.n * 7919 + i) %% %s""",
                        [client.id, n_rec])
            cur.execute("""
                INSERT INTO notifications_deliveryevent (status, event, provider,
                    provider_message_id, provider_event_id, error_code, error_message, detail,
                    occurred_at, created_at, delivery_id)
                SELECT e.status, e.event, 'sendgrid', '', '', '', '', '{}', d.created_at,
                       d.created_at, d.id
                FROM notifications_delivery d
                CROSS JOIN (VALUES ('delivered', 'delivered')) e(status, event)
                WHERE d.client_id = %s""", [client.id])
            cur.execute("DROP TABLE gen_n, gen_r")
        print(slug, "loaded in", round(time.monotonic() - t0), "s", flush=True)
        if slug == "big":
            print("live key", api_key_create(client=client, name="bench")[1])
            print("test key", api_key_create(client=client, name="bench-test", mode="test")[1])
    with connection.cursor() as cur:
        # What notifications_refresh_status stores after the last delivery finished.
        cur.execute("""
            UPDATE notifications_notification n SET counts = c.counts, counts_at = now()
            FROM (SELECT notification_id, jsonb_object_agg(status, k) AS counts
                  FROM (SELECT notification_id, status, count(*) AS k
                        FROM notifications_delivery GROUP BY 1, 2) s
                  GROUP BY 1) c
            WHERE n.id = c.notification_id""")
        cur.execute("VACUUM ANALYZE")


if __name__ == "__main__":
    main()
