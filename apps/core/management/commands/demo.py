"""`manage.py demo [--json]`: creates (or reuses) a demo client, key, admin, one staff user per
role (apps/accounts/roles.py), templates and recipients, and prints what a newcomer needs to
send a first notification and to try the admin as each role. Idempotent."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.roles import ADMINISTRATOR, PRODUCT_TEAM, SUPPORT
from apps.accounts.services import roles_sync
from apps.clients.models import ApiKey, Client, KeyMode, all_scopes
from apps.clients.services import api_key_create, api_key_scopes_set, hash_key
from apps.recipients.services import device_register, recipients_upsert
from apps.templates.models import Template
from apps.templates.services import template_create, template_update, template_version_create

TEMPLATES: list[dict[str, Any]] = [
    {
        "key": "welcome",
        "name": "Welcome (email, in-app)",
        "channels": ["email", "in_app"],
        "category": "transactional",
        "subject": "Welcome to Acme, {{ name }}!",
        "text_body": "Hi {{ name }},\n\nThanks for joining Acme.\n",
        "html_body": "<p>Hi {{ name }},</p><p>Thanks for joining <b>Acme</b>.</p>",
        "in_app_title": "Welcome to Acme, {{ name }}!",
        "in_app_body": "Thanks for joining. Your account is ready.",
        "in_app_action_url": "/",
        "in_app_data": {"kind": "welcome"},
    },
    {
        "key": "otp",
        "name": "One-time code (SMS)",
        "channels": ["sms"],
        "category": "security",
        "sms_body": "Your Acme code is {{ code }}. It expires in 10 minutes.",
    },
    {
        "key": "order_shipped",
        "name": "Order shipped (WhatsApp, push)",
        "channels": ["whatsapp", "push"],
        "category": "transactional",
        "whatsapp_body": "Hi {{ name }}, order {{ orderId }} is on its way.",
        "push_title": "Order {{ orderId }} shipped",
        "push_body": "It is on its way, {{ name }}.",
        "push_data": {"deep_link": "acme://orders/{{ orderId }}"},
    },
    {
        "key": "order_confirmation",
        "name": "Order confirmation",
        "channels": ["email"],
        "category": "transactional",
        "subject": "Order {{ orderId }} confirmed",
        "text_body": "Hi {{ name }}, your order {{ orderId }} is confirmed.",
        "html_body": "<p>Hi {{ name }}, your order <b>{{ orderId }}</b> is confirmed.</p>",
    },
]

RECIPIENTS: list[dict[str, Any]] = [
    {"id": "demo_user", "email": "demo.user@example.com", "phone": "+14155550100",
     "whatsapp": "+14155550100", "locale": "en", "timezone": "Europe/London",
     "attributes": {"plan": "pro"}},
    {"id": "bounce_user", "email": "bounce@example.com", "locale": "en", "timezone": "UTC"},
]

# The demo page (`make run`) calls the inbox API from these origins.
DEMO_INBOX_ORIGINS = ["http://127.0.0.1:8000", "http://localhost:8000"]


# Demo staff, one per role: username → role. Their password is the username (local use only).
DEMO_STAFF = {"product": PRODUCT_TEAM, "support": SUPPORT, "administrator": ADMINISTRATOR}


class Command(BaseCommand):
    help = "Create or reuse the demo client, API key, admin user, templates and recipients."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        raw_key = settings.DEMO_API_KEY
        if not raw_key:
            raise CommandError("DEMO_API_KEY is empty: the demo is for local use only.")
        client, _ = Client.objects.get_or_create(slug="demo", defaults={"name": "Demo client"})
        missing = [o for o in DEMO_INBOX_ORIGINS if o not in client.inbox_allowed_origins]
        if missing:
            client.inbox_allowed_origins = [*client.inbox_allowed_origins, *missing]
            client.save(update_fields=["inbox_allowed_origins"])
        # The demo keys hold every scope: a live key, and a test key (sandbox only).
        demo_keys = [("demo", raw_key, KeyMode.LIVE)]
        if settings.DEMO_TEST_API_KEY:
            demo_keys.append(("demo (test)", settings.DEMO_TEST_API_KEY, KeyMode.TEST))
        for name, raw, mode in demo_keys:
            existing = ApiKey.objects.filter(key_hash=hash_key(raw), revoked_at__isnull=True).first()
            if existing is None:
                api_key_create(client=client, name=name, raw_key=raw, mode=mode)
            else:
                api_key_scopes_set(api_key=existing, scopes=all_scopes())

        user_model = get_user_model()
        admin = user_model.objects.filter(username=settings.DEMO_ADMIN_USERNAME).first()
        if admin is None:
            user_model.objects.create_superuser(
                username=settings.DEMO_ADMIN_USERNAME, email="admin@example.com",
                password=settings.DEMO_ADMIN_PASSWORD,
            )
        roles_sync()
        staff = []
        for username, role in DEMO_STAFF.items():
            user = user_model.objects.filter(username=username).first()
            if user is None:
                user = user_model.objects.create_user(username=username, password=username,
                                                      email=f"{username}@example.com", is_staff=True)
            user.groups.add(Group.objects.get(name=role))
            staff.append({"role": role, "username": username, "password": username})

        templates: dict[str, str] = {}
        for spec in TEMPLATES:
            template = Template.objects.filter(client=client, key=spec["key"]).first()
            content = {k: v for k, v in spec.items()
                       if k not in ("key", "name", "channels", "category")}
            if template is None:
                template = template_create(client=client, key=spec["key"], name=spec["name"],
                                           channels=spec["channels"], category=spec["category"])
                template_version_create(template=template, **content)
            elif not set(spec["channels"]) <= set(template.channels):
                # A demo seeded before a channel was added (welcome got in-app content):
                # the channel and a new version with the current content.
                template_update(template=template, name=spec["name"],
                                channels=[*template.channels,
                                          *(c for c in spec["channels"] if c not in template.channels)])
                template_version_create(template=template, **content)
            templates[template.key] = str(template.id)
        saved = recipients_upsert(client=client, items=RECIPIENTS)
        device_register(recipient=saved["demo_user"], token="demo-device-token",  # noqa: S106
                        platform="android")

        result = {
            "client": client.slug,
            "api_key": raw_key,
            "test_api_key": settings.DEMO_TEST_API_KEY,
            "admin_username": settings.DEMO_ADMIN_USERNAME,
            "admin_password": settings.DEMO_ADMIN_PASSWORD,
            "staff": staff,
            "templates": templates,
            "recipients": [r["id"] for r in RECIPIENTS],
            "inbox_demo_url": "http://127.0.0.1:8000/demo/inbox/",
            "example_send": {
                "recipients": ["demo_user"],
                "template_id": "welcome",
                "variables": {"name": "Ada"},
                "channels": ["email"],
                "priority": "high",
            },
            "more_examples": {
                "sms": {"recipients": ["demo_user"], "template_id": "otp",
                        "variables": {"code": "482913"}, "priority": "critical"},
                "whatsapp_and_push": {"recipients": ["demo_user"], "template_id": "order_shipped",
                                      "variables": {"name": "Ada", "orderId": "ORD-789"}},
                "in_app": {"recipients": ["demo_user"], "template_id": "welcome",
                           "variables": {"name": "Ada"}, "channels": ["in_app"]},
            },
        }
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            self.stdout.write(f"Demo client '{client.slug}' ready.")
            self.stdout.write(f"API key: {raw_key}")
            if settings.DEMO_TEST_API_KEY:
                self.stdout.write(f"Test API key (sandbox only): {settings.DEMO_TEST_API_KEY}")
            self.stdout.write(f"Admin: {result['admin_username']} / {result['admin_password']}")
            for member in staff:
                self.stdout.write(f"{member['role']}: {member['username']} / {member['password']}")
