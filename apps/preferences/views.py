"""`/preferences/<token>/`: the hosted preference center, a server-rendered page (no login, no
JavaScript needed). GET shows the recipient's channels, categories, quiet hours and time zone;
POST (CSRF-protected) saves what changed through `preference_update`, with consent evidence of
source `preference_center`, then redirects back (POST/redirect/GET). The page follows the
recipient's locale (English and French). A bad, tampered or orphaned token is a 404 page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_protect

from apps.recipients.models import Recipient

from .center import (
    CHANNEL_UNSUBSCRIBE_QUESTIONS,
    BadCenterToken,
    CenterState,
    category_label,
    center_recipient,
    center_state,
    channel_label,
)
from .forms import PreferenceCenterForm
from .models import ConsentSource
from .services import ChangeContext, preference_update
from .unsubscribe import BadToken, unsubscribe_target

LANGUAGES = ("en", "fr")


def page_language(locale: str) -> str:
    """The page's language for a recipient locale (`fr-CA`, `fr_FR`, `fr` → `fr`); English for
    every language the page is not translated into."""
    base = (locale or "").replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else LANGUAGES[0]


def _private(response: HttpResponse) -> HttpResponse:
    # The token is a credential: keep it out of caches, other sites' Referer headers and
    # search engines. `same-origin`, not `no-referrer`: under no-referrer a browser posts the
    # form with `Origin: null`, which CSRF's origin check refuses.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex"
    return response


def not_found_page(request: HttpRequest) -> HttpResponse:
    language = page_language(translation.get_language_from_request(request))
    with translation.override(language):
        return _private(render(request, "preferences/not_found.html",
                               {"language": language}, status=404))


def _unsubscribe_offer(request: HttpRequest, recipient: Recipient,
                       state: CenterState) -> dict[str, str] | None:
    """Arriving from an email's unsubscribe link (`?unsubscribe=<its token>`): the one change
    it offers, shown first, posted to the link itself (which records it as before)."""
    token = request.GET.get("unsubscribe", "")
    if not token:
        return None
    try:
        target = unsubscribe_target(token)
    except BadToken:
        return None
    if target.recipient_id != str(recipient.pk):
        return None
    if target.category:
        # Offered unless already off (a category nothing was sent of yet is not listed: on).
        if any(c.name == target.category and (c.critical or not c.enabled)
               for c in state.categories):
            return None
    elif not state.channels.get(target.channel, False):
        return None
    if target.category:
        question = _("Stop receiving “%(category)s” messages?") % {
            "category": category_label(target.category)}
    else:
        question = str(CHANNEL_UNSUBSCRIBE_QUESTIONS.get(target.channel) or _(
            "Stop receiving all %(channel)s messages?") % {"channel": channel_label(target.channel)})
    return {"category": target.category, "channel": target.channel, "question": question,
            "action": reverse("preferences-unsubscribe", args=[token])}


@method_decorator(csrf_protect, name="dispatch")
class PreferenceCenterView(View):
    http_method_names = ["get", "post"]
    template_name = "preferences/center.html"

    def _render(self, request: HttpRequest, recipient: Recipient, form: PreferenceCenterForm,
                *, status: int = 200, saved: bool = False) -> HttpResponse:
        state = form.state
        return _private(render(request, self.template_name, {
            "recipient": recipient, "form": form, "state": state, "saved": saved,
            "language": translation.get_language(),
            "unsubscribe": _unsubscribe_offer(request, recipient, state),
            "channel_options": [(channel, channel_label(channel)) for channel in state.channels],
            "channels_checked": set(form["channels"].value() or []) if form.is_bound
            else {c for c, on in state.channels.items() if on},
            "categories_checked": set(form["categories"].value() or []) if form.is_bound
            else {c.name for c in state.categories if c.enabled},
        }, status=status))

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            recipient = center_recipient(token)
        except BadCenterToken:
            return not_found_page(request)
        state = center_state(recipient)
        initial = {
            "quiet_hours_enabled": state.quiet_hours_start is not None,
            "quiet_hours_start": state.quiet_hours_start or "22:00",
            "quiet_hours_end": state.quiet_hours_end or "08:00",
            "timezone": state.timezone,
        }
        with translation.override(page_language(recipient.locale)):
            form = PreferenceCenterForm(initial=initial, state=state)
            return self._render(request, recipient, form, saved=request.GET.get("saved") == "1")

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            recipient = center_recipient(token)
        except BadCenterToken:
            return not_found_page(request)
        with translation.override(page_language(recipient.locale)):
            form = PreferenceCenterForm(request.POST, state=center_state(recipient))
            if not form.is_valid():
                return self._render(request, recipient, form, status=400)
            context = ChangeContext.from_request(
                request, source=ConsentSource.PREFERENCE_CENTER,
                actor=f"recipient:{recipient.external_id}")
            preference_update(recipient=recipient, changes=form.changes(), context=context)
        return _private(HttpResponseRedirect(f"{request.path}?saved=1"))
