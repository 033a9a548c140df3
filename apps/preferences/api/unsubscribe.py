"""`GET/POST /api/v1/preferences/unsubscribe/{token}`: the page behind an email's unsubscribe
link. No login, no API key: the signed token is the credential. GET changes nothing (mail
scanners prefetch links): it lands on the recipient's preference center, which offers this
link's unsubscribe first (a button posting back here) next to every other preference; POST —
that button, or an RFC 8058 one-click POST from the mail client with
`List-Unsubscribe=One-Click` — opts out and answers 200."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.core.exceptions import NotFound
from apps.recipients.models import Recipient

from ..center import preference_center_token
from ..models import ConsentSource
from ..services import ChangeContext, unsubscribe_apply
from ..unsubscribe import BadToken, UnsubscribeTarget, unsubscribe_target

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1rem}}</style></head>
<body><h1>{}</h1>{}</body></html>"""


def _page(title: str, body: Any, *, status: int = 200) -> HttpResponse:
    response = HttpResponse(format_html(_PAGE, title, title, body), status=status)
    # The token is a credential: keep it out of caches and Referer headers.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response


def _what(target: UnsubscribeTarget) -> str:
    if target.category:
        return f"“{target.category}” messages"
    return f"all {target.channel} messages"


@method_decorator(csrf_exempt, name="dispatch")
class UnsubscribeView(View):
    http_method_names = ["get", "post"]

    def _target(self, token: str) -> tuple[UnsubscribeTarget | None, HttpResponse | None]:
        try:
            return unsubscribe_target(token), None
        except BadToken as exc:
            return None, _page("Invalid link", format_html("<p>{}</p>", str(exc)), status=400)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        target, error = self._target(token)
        if target is None:
            assert error is not None
            return error
        recipient = Recipient.objects.filter(pk=target.recipient_id).only("client_id").first()
        if recipient is None:
            return _page("Not found", format_html("<p>{}</p>", "This recipient no longer exists."),
                         status=404)
        center = reverse("preference-center",
                         args=[preference_center_token(recipient.client_id, recipient.pk)])
        response = HttpResponseRedirect(f"{center}?{urlencode({'unsubscribe': token})}")
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        target, error = self._target(token)
        if target is None:
            assert error is not None
            return error
        # RFC 8058 clients post List-Unsubscribe=One-Click; our own page posts confirm=page.
        via = "one_click" if request.POST.get("List-Unsubscribe") == "One-Click" else "page"
        context = ChangeContext.from_request(request, source=ConsentSource.LINK, actor="link",
                                             detail={"via": via})
        try:
            recipient = unsubscribe_apply(target=target, context=context)
        except NotFound as exc:
            return _page("Not found", format_html("<p>{}</p>", exc.message), status=404)
        center = reverse("preference-center",
                         args=[preference_center_token(recipient.client_id, recipient.pk)])
        return _page("Unsubscribed", format_html(
            '<p>You will no longer receive {}.</p><p><a href="{}">Manage all your preferences</a></p>',
            _what(target), center))
