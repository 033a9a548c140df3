"""`/demo/inbox/`: the inbox widget on a page for the demo recipient (`make run` prints its
URL). Served only when DEMO_PAGES is on (notifyhub/settings/local.py turns it on; off
everywhere else): it mints recipient tokens without an API key.

- GET  /demo/inbox/        the page: the widget mounted with a fresh token for `demo_user`,
                           and a button sending a demo in-app message;
- POST /demo/inbox/token   a new token (the widget's refresh hook calls it before expiry);
- POST /demo/inbox/send    sends the `welcome` template to `demo_user` on `in_app`.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from apps.clients.models import Client
from apps.core.exceptions import ApplicationError, error_body
from apps.inbox.tokens import mint_inbox_token
from apps.notifications.services import notification_send
from apps.preferences.center import preference_center_url
from apps.recipients.models import Recipient

DEMO_CLIENT = "demo"
DEMO_RECIPIENT = "demo_user"


def _demo() -> tuple[Client, Recipient]:
    if not getattr(settings, "DEMO_PAGES", False):
        raise Http404("Demo pages are off (DEMO_PAGES).")
    client = Client.objects.filter(slug=DEMO_CLIENT).first()
    recipient = (Recipient.objects.filter(client=client, external_id=DEMO_RECIPIENT).first()
                 if client else None)
    if client is None or recipient is None:
        raise Http404("No demo data: run `manage.py demo` first.")
    return client, recipient


def _token(client: Client, recipient: Recipient) -> dict[str, str]:
    minted = mint_inbox_token(client, recipient)
    return {"token": minted.token, "expires_at": minted.expires_at.isoformat(),
            "stream_url": settings.INBOX_STREAM_URL}


@require_GET
def demo_inbox_page(request: HttpRequest) -> HttpResponse:
    client, recipient = _demo()
    response = render(request, "demo/inbox.html", {
        "minted": _token(client, recipient), "recipient": recipient,
        "api_base": request.build_absolute_uri("/api/v1"),
        "preferences_url": preference_center_url(client.pk, recipient.pk),
    })
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def demo_inbox_token(request: HttpRequest) -> JsonResponse:
    client, recipient = _demo()
    return JsonResponse(_token(client, recipient))


@require_POST
def demo_inbox_send(request: HttpRequest) -> JsonResponse:
    client, recipient = _demo()
    try:
        outcome = notification_send(client=client, recipients=[recipient.external_id],
                                    template_id="welcome", variables={"name": "Ada"},
                                    channels=["in_app"], priority="high")
    except ApplicationError as exc:
        return JsonResponse(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    return JsonResponse({"id": str(outcome.notification.id)}, status=202)
