"""GDPR actions for the recipient admin (apps/recipients/admin.py lists them): "Export (GDPR)"
downloads the same JSON as the API; "Erase (GDPR)" asks for confirmation, then erases."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.template.response import TemplateResponse

from apps.core.exceptions import ApplicationError
from apps.recipients.models import Recipient

from .selectors import recipient_export
from .services import recipient_erase, recipient_export_log
from .tombstones import is_tombstone

# Erasures per confirmation: each is its own transaction.
MAX_ERASE = 100


@admin.action(description="Export (GDPR)", permissions=["view"])
def gdpr_export(modeladmin: Any, request: HttpRequest,
                queryset: QuerySet[Recipient]) -> HttpResponseBase | None:
    recipients = list(queryset.select_related("client")[:2])
    if len(recipients) != 1:
        messages.error(request, "Select exactly one recipient to export.")
        return None
    recipient = recipients[0]
    if is_tombstone(recipient.external_id):
        messages.error(request, "This recipient was erased: there is nothing to export.")
        return None
    recipient_export_log(recipient=recipient)
    response = StreamingHttpResponse(recipient_export(recipient=recipient),
                                     content_type="application/json")
    response["Content-Disposition"] = (
        f'attachment; filename="gdpr-export-{recipient.client.slug}-{recipient.pk}.json"')
    return response


@admin.action(description="Erase (GDPR) — irreversible", permissions=["delete"])
def gdpr_erase(modeladmin: Any, request: HttpRequest,
               queryset: QuerySet[Recipient]) -> TemplateResponse | None:
    recipients = [r for r in queryset.select_related("client").order_by("pk")[:MAX_ERASE + 1]
                  if not is_tombstone(r.external_id)]
    if not recipients:
        messages.error(request, "The selected recipients were already erased.")
        return None
    if len(recipients) > MAX_ERASE:
        messages.error(request, f"Erase at most {MAX_ERASE} recipients at a time.")
        return None
    if request.POST.get("confirm") != "yes":
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Erase recipients (GDPR)?",
            "opts": modeladmin.model._meta,
            "recipients": recipients,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action": "gdpr_erase",
        }
        return TemplateResponse(request, "admin/privacy/erase_confirmation.html", context)
    erased = 0
    for recipient in recipients:
        try:
            result = recipient_erase(recipient=recipient)
        except ApplicationError as exc:
            messages.error(request, f"{recipient.client}: not erased: {exc.message}")
            continue
        erased += 1
        messages.info(request, f"{recipient.client}: erased, now {result.tombstone} "
                               f"({sum(result.counts.values())} rows changed).")
    if erased:
        messages.success(request, f"Erased {erased} recipient(s).")
    return None
