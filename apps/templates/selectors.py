from __future__ import annotations

import contextlib
import uuid

from django.db.models import Q

from apps.clients.models import Client
from apps.core.exceptions import ApplicationError

from .models import Template


def template_get_for_send(*, client: Client, template_ref: str) -> Template:
    """A client's template by id or key, with its active version; 422 if unusable."""
    query = Q(key=template_ref)
    with contextlib.suppress(ValueError):
        query |= Q(id=uuid.UUID(str(template_ref)))
    template = (
        Template.objects.select_related("active_version").filter(query, client=client).first()
    )
    if template is None:
        raise ApplicationError(
            f"Unknown template '{template_ref}'.",
            code="unknown_template",
            fields={"template_id": ["No template with this id or key."]},
        )
    if template.active_version is None:
        raise ApplicationError(
            f"Template '{template.key}' has no published version.",
            code="template_not_published",
            fields={"template_id": ["Publish a version first."]},
        )
    return template
