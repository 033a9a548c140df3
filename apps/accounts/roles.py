"""Staff roles: Django groups whose permissions are defined here, in code, and re-applied by
`manage.py sync_roles` (and the `accounts` data migration). A group's permissions are set to
exactly this list on every sync: edit the lists here, not the groups in the admin.

* **Product team** — templates and their versions (and publishing them), recipients'
  preferences and consent, segments and recurring sends: view, add, change. Reads
  notifications and their deliveries.
* **Support** — reads notifications, deliveries and their events, the audit log, recipients
  and their devices, preferences and consent records, suppressions; may re-drive dead
  letters (failed deliveries), which re-sends what already failed and changes nothing else.
* **Administrator** — every permission, including clients, API keys, webhooks, users,
  groups and two-factor devices (without being a superuser).

`roles_apply` works on the real models and on a migration's historical ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

PRODUCT_TEAM = "Product team"
SUPPORT = "Support"
ADMINISTRATOR = "Administrator"

VIEW = ("view",)
EDIT = ("view", "add", "change")

# Permissions the models do not declare: (app label, model, codename, name). Kept here, not in
# a model's Meta, so that adding one needs no migration of the app it concerns.
EXTRA_PERMISSIONS = (
    ("notifications", "delivery", "redrive_delivery", "Can re-drive failed deliveries"),
)
REDRIVE = "notifications.redrive_delivery"
PUBLISH = "templates.publish_templateversion"


@dataclass(frozen=True)
class Role:
    name: str
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "app.model" → actions
    extra: tuple[str, ...] = ()  # "app.codename"
    everything: bool = False

    def codenames(self) -> set[tuple[str, str]]:
        wanted = {(label.split(".")[0], f"{action}_{label.split('.')[1]}")
                  for label, actions in self.models.items() for action in actions}
        return wanted | {tuple(p.split(".", 1)) for p in self.extra}  # type: ignore[misc]


ROLES = (
    Role(PRODUCT_TEAM, models={
        "templates.template": EDIT,
        "templates.templateversion": EDIT,
        "templates.templateactiveversion": VIEW,
        "templates.templatepublication": VIEW,
        "preferences.preferenceprofile": EDIT,
        "preferences.consentrecord": VIEW,
        "segments.segment": EDIT,
        "scheduling.recurringsend": EDIT,
        "notifications.notification": VIEW,
        "notifications.delivery": VIEW,
        "notifications.deliveryevent": VIEW,
        # A preference profile picks its recipient; a segment's preview links to them.
        "recipients.recipient": VIEW,
    }, extra=(PUBLISH,)),
    Role(SUPPORT, models={
        "notifications.notification": VIEW,
        "notifications.delivery": VIEW,
        "notifications.deliveryevent": VIEW,
        "notifications.suppression": VIEW,
        "audit.auditlog": VIEW,
        "recipients.recipient": VIEW,
        "recipients.device": VIEW,
        "preferences.preferenceprofile": VIEW,
        "preferences.consentrecord": VIEW,
    }, extra=(REDRIVE,)),
    Role(ADMINISTRATOR, everything=True),
)
ROLE_NAMES = tuple(role.name for role in ROLES)


@dataclass
class RoleChange:
    group: str
    created: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # defined here, not in the database

    @property
    def changed(self) -> bool:
        return self.created or bool(self.added or self.removed)


def _label(permission: Any) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def roles_apply(*, group_model: Any, permission_model: Any, content_type_model: Any) -> list[RoleChange]:
    """Creates the extra permissions and the groups, and sets each group's permissions to its
    role's. Idempotent: a second run changes nothing."""
    for app_label, model, codename, name in EXTRA_PERMISSIONS:
        content_type, _ = content_type_model.objects.get_or_create(app_label=app_label, model=model)
        permission_model.objects.get_or_create(content_type=content_type, codename=codename,
                                               defaults={"name": name})
    every = list(permission_model.objects.select_related("content_type"))
    by_key = {(p.content_type.app_label, p.codename): p for p in every}
    changes = []
    for role in ROLES:
        group, created = group_model.objects.get_or_create(name=role.name)
        change = RoleChange(group=role.name, created=created)
        if role.everything:
            wanted = every
        else:
            keys = role.codenames()
            wanted = [by_key[k] for k in sorted(keys) if k in by_key]
            change.missing = sorted(f"{a}.{c}" for a, c in keys if (a, c) not in by_key)
        current = {p.pk: p for p in group.permissions.select_related("content_type")}
        target = {p.pk: p for p in wanted}
        change.added = sorted(_label(p) for pk, p in target.items() if pk not in current)
        change.removed = sorted(_label(p) for pk, p in current.items() if pk not in target)
        if change.added or change.removed:
            group.permissions.set(list(target))
        if change.missing:
            logger.warning("role %s: permissions not in the database: %s", role.name,
                           ", ".join(change.missing))
        changes.append(change)
    return changes
