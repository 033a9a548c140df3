"""Writes: every change of a preference profile goes through `preferences_change`, which locks
the profiles, applies the changes, writes one ConsentRecord per effective change in the same
transaction, bumps the profile's version and refreshes the cache on commit.

Entry points: `preference_update` (PUT), `preference_channel_set` (PATCH a channel),
`preference_opt_out` / `preference_opt_in` (API, unsubscribe link), `inbound_keyword_apply`
(STOP/START/HELP texted to our numbers).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.context import Actor
from apps.audit.models import ActorType, AuditLog
from apps.audit.services import Entry, audit_records
from apps.clients.models import Client
from apps.core.exceptions import ApplicationError, NotFound
from apps.core.logging import mask_email, mask_phone
from apps.notifications.models import Channel
from apps.notifications.suppressions import (
    REASON_STOP_KEYWORD,
    REASON_UNSUBSCRIBED,
    consent_opt_out_add,
    consent_opt_out_lift,
)
from apps.recipients.models import Recipient

from .models import ConsentAction, ConsentRecord, ConsentSource, PreferenceProfile
from .selectors import critical_categories, recipients_for_number
from .snapshot import Preferences, cache_forget, cache_store
from .unsubscribe import UnsubscribeTarget

logger = logging.getLogger(__name__)

MAX_USER_AGENT = 512


@dataclass(frozen=True)
class ChangeContext:
    """Who changes a preference, through what, from where (the consent evidence)."""

    source: str  # ConsentSource
    actor: str = ""
    ip: str | None = None
    user_agent: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)  # added to every record

    @classmethod
    def from_request(cls, request: HttpRequest, *, source: str, actor: str,
                     detail: Mapping[str, Any] | None = None) -> ChangeContext:
        raw_ip = request.META.get("REMOTE_ADDR") or ""
        try:
            ip: str | None = str(ipaddress.ip_address(raw_ip))
        except ValueError:
            ip = None
        return cls(source=source, actor=actor[:200], ip=ip,
                   user_agent=request.headers.get("User-Agent", "")[:MAX_USER_AGENT],
                   detail=dict(detail or {}))


@dataclass(frozen=True)
class QuietHours:
    start: Any  # datetime.time
    end: Any
    timezone: str = ""


@dataclass
class PreferenceChanges:
    """What to change; anything not mentioned is kept.

    channels: channel → {"enabled": bool, "quiet_hours": "HH:MM-HH:MM" | None} (either key);
    categories: category → enabled; quiet_hours: QuietHours, None to clear (only with
    `set_quiet_hours`); frequency_caps: category → {"limit", "period"} or None to remove."""

    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: dict[str, bool] = field(default_factory=dict)
    set_quiet_hours: bool = False
    quiet_hours: QuietHours | None = None
    frequency_caps: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def check_rules(self) -> None:
        """Business rules: critical categories can be neither opted out of nor capped."""
        critical = critical_categories()
        errors: dict[str, list[str]] = {}
        for category, enabled in self.categories.items():
            if category.lower() in critical and not enabled:
                errors[f"categories.{category}"] = [
                    f"'{category}' is a critical category: it cannot be opted out of."]
        for category, cap in self.frequency_caps.items():
            if category.lower() in critical and cap is not None:
                errors[f"frequency_caps.{category}"] = [
                    f"'{category}' is a critical category: it cannot be capped."]
        if errors:
            raise ApplicationError("Critical categories are always delivered.",
                                   code="critical_category", fields=errors)


def _record(profile: PreferenceProfile, context: ChangeContext, *, action: str,
            channel: str = "", category: str = "", detail: dict[str, Any] | None = None
            ) -> ConsentRecord:
    return ConsentRecord(
        client_id=profile.client_id, recipient_id=profile.recipient_id, channel=channel,
        category=category, action=action, source=context.source, actor=context.actor,
        ip=context.ip, user_agent=context.user_agent, detail={**context.detail, **(detail or {})},
    )


def _apply(profile: PreferenceProfile, changes: PreferenceChanges,
           context: ChangeContext) -> tuple[bool, list[ConsentRecord], list[tuple[str, str]]]:
    """Applies changes to a locked profile in memory: (stored data changed, consent records,
    opt-ins of a stored opt-out as (channel, category) — they lift the address's consent
    opt-out too). Every change of a stored value has its record; setting a value it already
    has, none."""
    records: list[ConsentRecord] = []
    lifts: list[tuple[str, str]] = []
    changed = False
    channels = {name: dict(spec or {}) for name, spec in profile.channels.items()}
    for channel, spec in changes.channels.items():
        current = channels.setdefault(channel, {})
        # An explicit opt-in over the default is recorded too (affirmative consent).
        if "enabled" in spec and current.get("enabled") is not bool(spec["enabled"]):
            after = bool(spec["enabled"])
            if after and current.get("enabled") is False:
                lifts.append((channel, ""))
            current["enabled"] = after
            changed = True
            records.append(_record(
                profile, context, channel=channel,
                action=ConsentAction.OPT_IN if after else ConsentAction.OPT_OUT))
        if "quiet_hours" in spec:
            before_qh = current.get("quiet_hours") or None
            after_qh = spec["quiet_hours"] or None
            if before_qh != after_qh:
                if after_qh:
                    current["quiet_hours"] = after_qh
                else:
                    current.pop("quiet_hours", None)
                changed = True
                records.append(_record(
                    profile, context, channel=channel, action=ConsentAction.UPDATE,
                    detail={"field": "quiet_hours", "before": before_qh, "after": after_qh}))
        if not current:
            channels.pop(channel)
    profile.channels = channels

    categories = dict(profile.categories)
    for category, enabled in changes.categories.items():
        if categories.get(category) is not enabled:
            if enabled and categories.get(category) is False:
                lifts.extend((channel, category) for channel in LINK_CHANNELS)
            categories[category] = enabled
            changed = True
            records.append(_record(
                profile, context, category=category,
                action=ConsentAction.OPT_IN if enabled else ConsentAction.OPT_OUT))
    profile.categories = categories

    if changes.set_quiet_hours:
        before_doc = _quiet_hours_doc(profile.quiet_hours_start, profile.quiet_hours_end,
                                      profile.quiet_hours_timezone)
        new = changes.quiet_hours
        if new is None:
            profile.quiet_hours_start = profile.quiet_hours_end = None
            profile.quiet_hours_timezone = ""
        else:
            profile.quiet_hours_start, profile.quiet_hours_end = new.start, new.end
            profile.quiet_hours_timezone = new.timezone or ""
        after_doc = _quiet_hours_doc(profile.quiet_hours_start, profile.quiet_hours_end,
                                     profile.quiet_hours_timezone)
        if before_doc != after_doc:
            changed = True
            records.append(_record(profile, context, action=ConsentAction.UPDATE,
                                   detail={"field": "quiet_hours", "before": before_doc,
                                           "after": after_doc}))

    caps = dict(profile.frequency_caps)
    for category, cap in changes.frequency_caps.items():
        before_cap = caps.get(category)
        after_cap = {"limit": int(cap["limit"]), "period": str(cap["period"])} if cap else None
        if before_cap == after_cap:
            continue
        if after_cap is None:
            caps.pop(category, None)
        else:
            caps[category] = after_cap
        changed = True
        records.append(_record(profile, context, category=category, action=ConsentAction.UPDATE,
                               detail={"field": "frequency_cap", "before": before_cap,
                                       "after": after_cap}))
    profile.frequency_caps = caps
    return changed, records, lifts


def _quiet_hours_doc(start: Any, end: Any, tz: str) -> dict[str, Any] | None:
    if start is None or end is None:
        return None
    return {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "timezone": tz or None}


def _lock_profiles(recipients: Sequence[Recipient]) -> dict[str, PreferenceProfile]:
    """The recipients' profiles, created when missing, locked for this transaction."""
    PreferenceProfile.objects.bulk_create(
        [PreferenceProfile(recipient_id=r.pk, client_id=r.client_id) for r in recipients],
        ignore_conflicts=True,
    )
    rows = PreferenceProfile.objects.select_for_update().filter(
        recipient_id__in=[r.pk for r in recipients]
    ).order_by("recipient_id")
    return {str(p.recipient_id): p for p in rows}


@transaction.atomic
def preferences_change(
    *, recipients: Sequence[Recipient], changes: PreferenceChanges, context: ChangeContext
) -> tuple[dict[str, PreferenceProfile], list[ConsentRecord]]:
    """Applies the same changes to each recipient's profile, with their consent records, in
    one transaction. Returns recipient id → profile, and the records written."""
    changes.check_rules()
    if not recipients:
        return {}, []
    profiles = _lock_profiles(recipients)
    records: list[ConsentRecord] = []
    touched: list[PreferenceProfile] = []
    lifts: list[tuple[Any, str, str, str | None]] = []
    by_id = {str(r.pk): r for r in recipients}
    now = timezone.now()
    for profile in profiles.values():
        changed, new_records, new_lifts = _apply(profile, changes, context)
        records.extend(new_records)
        recipient = by_id.get(str(profile.recipient_id))
        if recipient is not None:
            # The person is opted back in where they had opted out: the address's consent
            # opt-out goes too (a new record with the address, opted in over the default,
            # lifts nothing: only the person's START or the stopped record's opt-in does).
            lifts.extend((profile.client_id, channel, recipient.address_for(channel), category)
                         for channel, category in new_lifts)
        if changed:
            profile.version += 1
            profile.updated_at = now  # bulk_update does not apply auto_now
            touched.append(profile)
    if touched:
        PreferenceProfile.objects.bulk_update(
            touched, ["channels", "categories", "quiet_hours_start", "quiet_hours_end",
                      "quiet_hours_timezone", "frequency_caps", "version", "updated_at"],
        )
    if lifts:
        consent_opt_out_lift(items=lifts)
    if records:
        ConsentRecord.objects.bulk_create(records)
        audit_preferences_change(profiles=touched, records=records, recipients=recipients,
                                 context=context)
    if touched:
        fresh = {str(p.recipient_id): Preferences.from_profile(p) for p in touched}
        # Now (a reader in this window loads the old row and may re-add it: the commit hook
        # overwrites that) and after commit (the value every worker reads from then on).
        cache_forget(fresh)
        transaction.on_commit(lambda: cache_store(fresh))
    return profiles, records


def preference_update(
    *, recipient: Recipient, changes: PreferenceChanges, context: ChangeContext
) -> PreferenceProfile:
    profiles, _ = preferences_change(recipients=[recipient], changes=changes, context=context)
    return profiles[str(recipient.pk)]


def preference_channel_set(
    *, recipient: Recipient, channel: str, enabled: bool | None = None,
    quiet_hours: str | None = None, set_quiet_hours: bool = False, context: ChangeContext,
) -> PreferenceProfile:
    spec: dict[str, Any] = {}
    if enabled is not None:
        spec["enabled"] = enabled
    if set_quiet_hours:
        spec["quiet_hours"] = quiet_hours
    return preference_update(recipient=recipient,
                             changes=PreferenceChanges(channels={channel: spec}), context=context)


def _opt_changes(*, enabled: bool, channel: str | None, category: str | None) -> PreferenceChanges:
    changes = PreferenceChanges()
    if channel:
        changes.channels[channel] = {"enabled": enabled}
    if category:
        changes.categories[category] = enabled
    return changes


def preference_opt_out(*, recipient: Recipient, channel: str | None = None,
                       category: str | None = None, context: ChangeContext) -> PreferenceProfile:
    return preference_update(
        recipient=recipient, context=context,
        changes=_opt_changes(enabled=False, channel=channel, category=category))


def preference_opt_in(*, recipient: Recipient, channel: str | None = None,
                      category: str | None = None, context: ChangeContext) -> PreferenceProfile:
    return preference_update(
        recipient=recipient, context=context,
        changes=_opt_changes(enabled=True, channel=channel, category=category))


# -- inbound keywords (Twilio) -------------------------------------------------------------

# The FCC's words (47 CFR 64.1200(a)(10): stop, quit, end, revoke, opt out, cancel,
# unsubscribe) and the carriers' (STOPALL, OPTOUT); START/UNSTOP/YES and HELP/INFO as CTIA.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# In a longer message these words still mean "no more messages" ("please stop texting me");
# END and CANCEL do not ("cancel my appointment", "when does the sale end?").
SENTENCE_OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "QUIT", "REVOKE", "OPTOUT"})
DEFAULT_HELP_TEXT = ("NotifyHub notifications. Reply STOP to unsubscribe, START to resubscribe. "
                     "Msg & data rates may apply.")
WHATSAPP_PREFIX = "whatsapp:"
MAX_TEXT_KEPT = 160  # of the message texted, in the consent record
LINK_CHANNELS = (Channel.EMAIL.value,)  # the channels an unsubscribe link is for
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def keyword_of(body: str) -> tuple[str, str]:
    """(kind, keyword) of a message texted to us: kind "opt_out", "opt_in", "help" or "" (not
    a keyword). Case, width (NFKC), surrounding whitespace and punctuation, and spaces or
    hyphens inside ("opt out", "Opt-Out", "stop all") do not matter. A message that is only a
    keyword is that keyword; a longer one opts out when one of its words is an unambiguous
    opt-out word (SENTENCE_OPT_OUT_WORDS, or "opt out")."""
    text = unicodedata.normalize("NFKC", body or "").upper()
    words = [w for w in (_EDGES.sub("", token) for token in text.split()) if w]
    whole = "".join(w.replace("-", "") for w in words)
    if whole in OPT_OUT_KEYWORDS:
        return "opt_out", whole
    if whole in OPT_IN_KEYWORDS:
        return "opt_in", whole
    if whole in HELP_KEYWORDS:
        return "help", whole
    for i, word in enumerate(words):
        joined = word.replace("-", "")
        if joined in SENTENCE_OPT_OUT_WORDS:
            return "opt_out", joined
        if joined == "OPT" and i + 1 < len(words) and words[i + 1] == "OUT":
            return "opt_out", "OPTOUT"
    return "", ""


@dataclass(frozen=True)
class KeywordOutcome:
    keyword: str = ""  # "opt_out", "opt_in", "help" or "" (not a keyword)
    channel: str = ""
    recipients: int = 0  # recipients the number belongs to
    changed: int = 0  # of which changed state
    reply: str = ""  # text to answer with ("" = no reply)
    clients: int = 0  # clients whose opt-out of the number was added / lifted
    confirmation_delivery_id: str = ""  # the one confirmation of a new opt-out


def clients_for_keyword(*, channel: str, to: str, recipients: Sequence[Recipient]) -> set[str]:
    """The clients a keyword applies to: every client with a recipient at the number (as
    before), and every client that texts from the number it was sent to (its own sender on
    that channel, or the service default when it has none): a STOP to that number must hold
    for them even when they have no recipient with it yet (or any more)."""
    from .confirmation import bare_number, default_sender

    ids = {str(r.client_id) for r in recipients}
    ours = bare_number(to)
    if ours:
        field = "whatsapp_from" if channel == Channel.WHATSAPP else "sms_from"
        query = Q(**{field: ours})
        if ours == default_sender(channel):
            query |= Q(**{field: ""})
        ids |= {str(i) for i in Client.objects.filter(query).values_list("id", flat=True)}
    return ids


def inbound_keyword_apply(*, from_: str, body: str, context: ChangeContext | None = None,
                          to: str = "") -> KeywordOutcome:
    """A message texted to one of our numbers (`to`): STOP-like keywords turn the channel off
    for every recipient (of every client) with that number and suppress the number itself
    for every client concerned (`clients_for_keyword`), so that any recipient carrying it later
    is not texted either, then queue the one confirmation; START-like ones undo both; HELP
    answers with PREFERENCES_HELP_TEXT. See `keyword_of` for what counts as a keyword."""
    kind, keyword = keyword_of(body)
    whatsapp = from_.lower().startswith(WHATSAPP_PREFIX)
    channel = Channel.WHATSAPP.value if whatsapp else Channel.SMS.value
    number = (from_[len(WHATSAPP_PREFIX):] if whatsapp else from_).strip()
    if kind == "help":
        return KeywordOutcome("help", channel,
                              reply=str(getattr(settings, "PREFERENCES_HELP_TEXT", DEFAULT_HELP_TEXT)))
    if not kind or not number:
        return KeywordOutcome("", channel)
    enabled = kind == "opt_in"
    source = ConsentSource.WHATSAPP_KEYWORD if whatsapp else ConsentSource.SMS_KEYWORD
    base = context or ChangeContext(source=source)
    detail = {**base.detail, "keyword": keyword, "text": (body or "")[:MAX_TEXT_KEPT]}
    context = ChangeContext(source=source, actor=from_[:200], ip=base.ip,
                            user_agent=base.user_agent, detail=detail)
    recipients = list(recipients_for_number(channel=channel, number=number))
    with transaction.atomic():
        _, records = preferences_change(
            recipients=recipients, context=context,
            changes=PreferenceChanges(channels={channel: {"enabled": enabled}}),
        )
        clients = clients_for_keyword(channel=channel, to=to, recipients=recipients)
        confirmation_id, reply = "", ""
        if enabled:
            consent_opt_out_lift(items=[(c, channel, number, None) for c in clients])
            touched = clients
        else:
            from .confirmation import opt_out_confirm

            new = consent_opt_out_add(
                client_ids=clients, channel=channel, address=number, reason=REASON_STOP_KEYWORD,
                detail=f"{keyword} texted (message {detail.get('message_sid', '')})")
            confirmation = opt_out_confirm(
                channel=channel, number=number, to=to, new_clients=new, recipients=recipients,
                actor=from_, source=source, detail=detail)
            confirmation_id, reply = confirmation.delivery_id, confirmation.reply
            touched = set(new)
    logger.info("inbound %s %s from %s: %d recipients, %d changed, %d clients", channel,
                keyword, mask_phone(number), len(recipients), len(records), len(touched))
    return KeywordOutcome(kind, channel, recipients=len(recipients), changed=len(records),
                          reply=reply, clients=len(touched),
                          confirmation_delivery_id=confirmation_id)


# -- unsubscribe links ---------------------------------------------------------------------


def unsubscribe_apply(*, target: UnsubscribeTarget, context: ChangeContext) -> Recipient:
    """Opts the link's recipient out of its category (or its channel); the actor is the
    address the link was sent to. NotFound when the recipient no longer exists."""
    recipient = Recipient.objects.filter(pk=target.recipient_id).first()
    if recipient is None:
        raise NotFound("This recipient no longer exists.")
    context = ChangeContext(
        source=ConsentSource.LINK, actor=recipient.address_for(target.channel)[:200] or context.actor,
        ip=context.ip, user_agent=context.user_agent,
        detail={**context.detail, "via_channel": target.channel},
    )
    with transaction.atomic():
        if target.category:
            preference_opt_out(recipient=recipient, category=target.category, context=context)
        else:
            preference_opt_out(recipient=recipient, channel=target.channel, context=context)
        # The address, not only this record: another record with it (or the address re-added
        # after an erasure) is not sent this category (or this channel) either.
        consent_opt_out_add(
            client_ids=[recipient.client_id], channel=target.channel,
            address=recipient.address_for(target.channel), reason=REASON_UNSUBSCRIBED,
            category=target.category or "",
            detail=f"unsubscribe link ({context.detail.get('via', 'link')})")
    return recipient


# -- audit rows (apps/audit/services.py writes them) ------------------------------------------

# Consent sources that are people reaching public endpoints, not API keys or staff.
INBOUND_SOURCES = {"sms_keyword": mask_phone, "whatsapp_keyword": mask_phone, "link": mask_email}


def audit_preferences_change(*, profiles: Sequence[PreferenceProfile], records: Sequence[ConsentRecord],
                             recipients: Sequence[Recipient], context: ChangeContext) -> list[AuditLog]:
    """One row per recipient whose preferences changed: `preference.opt_out` or
    `preference.opt_in` when that is all that changed, `preference.update` otherwise."""
    external_ids = {str(r.pk): r.external_id for r in recipients}
    by_recipient: dict[str, list[ConsentRecord]] = defaultdict(list)
    for record in records:
        by_recipient[str(record.recipient_id)].append(record)
    actor = None
    mask = INBOUND_SOURCES.get(str(context.source))
    if mask is not None:
        address = context.actor.removeprefix("whatsapp:")
        actor = Actor(ActorType.INBOUND, "", f"{context.source}:{mask(address)}")
    elif context.source == ConsentSource.PREFERENCE_CENTER:
        # The person on their own page (the row names the recipient already).
        actor = Actor(ActorType.INBOUND, "", ConsentSource.PREFERENCE_CENTER.value)
    entries = []
    for profile in profiles:
        changes = by_recipient.get(str(profile.recipient_id), [])
        if not changes:
            continue
        kinds = {str(r.action) for r in changes}
        action = f"preference.{kinds.pop()}" if kinds in ({"opt_out"}, {"opt_in"}) else "preference.update"
        entries.append(Entry(
            action=action, client=profile.client_id, object_type="preference",
            object_id=profile.recipient_id,
            recipient_external_id=external_ids.get(str(profile.recipient_id), ""), actor=actor,
            changes={"source": context.source, "version": profile.version, "changes": [
                {k: v for k, v in (("action", r.action), ("channel", r.channel),
                                   ("category", r.category), ("field", r.detail.get("field")),
                                   ("before", r.detail.get("before")),
                                   ("after", r.detail.get("after"))) if v not in ("", None)}
                for r in changes]},
        ))
    return audit_records(entries)
