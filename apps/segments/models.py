from __future__ import annotations

import uuid

from django.db import models

from apps.clients.models import Client


class Segment(models.Model):
    """A named, client-scoped set of recipients described by a criteria tree over their
    attributes and fields (see criteria.py). Evaluated when used, never materialized."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    key = models.SlugField(max_length=100, help_text="Stable name, e.g. 'pro_users_fr'.")
    definition = models.JSONField(
        default=dict,
        help_text='Criteria tree, e.g. {"all": [{"attribute": "plan", "op": "equals", '
                  '"value": "pro"}]}. See docs/scheduling.md.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="segment_unique_key"),
        ]
        indexes = [models.Index(fields=["client", "-created_at"], name="segment_client_created")]

    def __str__(self) -> str:
        return self.key
