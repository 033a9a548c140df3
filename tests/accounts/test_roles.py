"""Roles are Django groups whose permissions come from code: created by the data migration,
re-applied (and hand edits undone) by `manage.py sync_roles`, idempotently."""

from __future__ import annotations

import importlib
import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from apps.accounts.roles import ADMINISTRATOR, PRODUCT_TEAM, ROLE_NAMES, SUPPORT
from apps.audit.models import AuditLog

pytestmark = pytest.mark.django_db


def perms(role: str) -> set[str]:
    return {f"{app}.{codename}" for app, codename in Group.objects.get(name=role)
            .permissions.values_list("content_type__app_label", "codename")}


def test_sync_creates_the_roles_with_their_permissions() -> None:
    Group.objects.filter(name__in=ROLE_NAMES).delete()
    call_command("sync_roles", stdout=io.StringIO())

    product, support = perms(PRODUCT_TEAM), perms(SUPPORT)
    assert {"templates.change_template", "templates.add_templateversion",
            "templates.publish_templateversion", "segments.change_segment",
            "scheduling.add_recurringsend", "preferences.change_preferenceprofile",
            "notifications.view_notification"} <= product
    assert not any(p.startswith(("clients.", "auth.", "webhooks.", "audit.")) for p in product)
    assert "segments.delete_segment" not in product
    assert {"notifications.view_delivery", "notifications.view_deliveryevent",
            "notifications.view_suppression", "audit.view_auditlog", "recipients.view_recipient",
            "notifications.redrive_delivery"} <= support
    assert all(p.split(".")[1].startswith("view_") for p in support - {"notifications.redrive_delivery"})
    assert perms(ADMINISTRATOR) == {f"{a}.{c}" for a, c in Permission.objects.values_list(
        "content_type__app_label", "codename")}


def test_sync_is_idempotent_and_undoes_hand_edits() -> None:
    call_command("sync_roles", stdout=io.StringIO())
    before = AuditLog.objects.filter(action="roles.sync").count()
    out = io.StringIO()
    call_command("sync_roles", stdout=out)
    assert "Support: unchanged (+0 -0)" in out.getvalue()
    assert AuditLog.objects.filter(action="roles.sync").count() == before  # nothing changed

    support = Group.objects.get(name=SUPPORT)
    support.permissions.add(Permission.objects.get(codename="publish_templateversion"))
    call_command("sync_roles", stdout=io.StringIO())
    assert "templates.publish_templateversion" not in perms(SUPPORT)
    row = AuditLog.objects.filter(action="roles.sync").latest("id")
    assert row.changes["groups"] == {SUPPORT: {"created": False, "added": [],
                                               "removed": ["templates.publish_templateversion"]}}
    assert (row.actor_type, row.actor_display) == ("system", "manage.py sync_roles")


def test_the_data_migration_creates_the_roles_from_historical_models() -> None:
    """What a fresh database gets from `migrate`, before any sync_roles."""
    loader = MigrationLoader(connection)
    state = loader.project_state(("accounts", "0001_roles"), at_end=False)
    migration = importlib.import_module(loader.get_migration("accounts", "0001_roles").__module__)
    Group.objects.filter(name__in=ROLE_NAMES).delete()

    migration.forwards(state.apps, None)

    assert set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == set(ROLE_NAMES)
    assert {"templates.publish_templateversion", "templates.add_template"} <= perms(PRODUCT_TEAM)
    assert "notifications.redrive_delivery" in perms(SUPPORT)
    out = io.StringIO()
    call_command("sync_roles", stdout=out)  # the migration left nothing for the sync to do
    assert out.getvalue().splitlines() == [f"{name}: unchanged (+0 -0)" for name in ROLE_NAMES]
