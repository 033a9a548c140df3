"""Reads: the send-time decision (`preference_decisions`), the API document of a profile, the
consent history, and the recipients a texting number belongs to."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from apps.core.crypto import pii_hash
from apps.notifications.models import Channel
from apps.notifications.suppressions import CONFIRMATION_CATEGORY, confirmation_deliveries
from apps.recipients.models import Recipient

from .caps import CapRequest, cap_key, caps_release, caps_reserve
from .models import ConsentRecord, PreferenceProfile
from .snapshot import DEFAULTS, Preferences, cache_fill, cache_read
from .timing import cap_window, quiet_until, zone

DEFAULT_CRITICAL_CATEGORIES = frozenset({"security", "otp"})
# Channels that make no sound: quiet hours do not hold them (docs/preferences.md, docs/inbox.md).
SILENT_CHANNELS = frozenset({"in_app"})


def critical_categories() -> frozenset[str]:
    """Categories no preference can stop: `settings.PREFERENCES_CRITICAL_CATEGORIES`."""
    value = getattr(settings, "PREFERENCES_CRITICAL_CATEGORIES", DEFAULT_CRITICAL_CATEGORIES)
    return frozenset(str(c).lower() for c in value)


# -- the send-time decision -------------------------------------------------------------


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    SUPPRESS = "suppress"
    HOLD = "hold"


class Reason:
    CHANNEL_DISABLED = "channel_disabled"
    CATEGORY_OPTED_OUT = "category_opted_out"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    CRITICAL = "critical_category"  # allowed: critical categories bypass the rest
    # allowed: the one confirmation of a STOP (nothing else of its category is)
    OPT_OUT_CONFIRMATION = "opt_out_confirmation"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    until: datetime | None = None  # HOLD: when the quiet hours end (UTC)
    cap_key: str = ""  # ALLOW under a frequency cap: the window that counted it

    @property
    def allowed(self) -> bool:
        return self.verdict == Verdict.ALLOW

    @classmethod
    def allow(cls, reason: str = "", cap_key: str = "") -> Decision:
        return cls(Verdict.ALLOW, reason, cap_key=cap_key)

    @classmethod
    def suppress(cls, reason: str) -> Decision:
        return cls(Verdict.SUPPRESS, reason)

    @classmethod
    def hold(cls, until: datetime, reason: str = Reason.QUIET_HOURS) -> Decision:
        return cls(Verdict.HOLD, reason, until=until)


@dataclass(frozen=True)
class PreferenceCheck:
    """What the decision needs to know about one delivery."""

    delivery_id: str
    recipient_id: str
    channel: str
    category: str
    recipient_timezone: str = "UTC"
    # A test key's delivery: counted in frequency-cap windows of its own, so test sends never
    # use up a recipient's live cap (nor the reverse).
    is_test: bool = False


DeliveryLike = PreferenceCheck | tuple[Any, ...] | Any


def as_check(item: DeliveryLike) -> PreferenceCheck:
    """A PreferenceCheck from a PreferenceCheck, a tuple in its field order, or a Delivery
    (with `recipient` and `notification` loaded, as dispatch's select_related does)."""
    if isinstance(item, PreferenceCheck):
        return item
    if isinstance(item, tuple):
        return PreferenceCheck(*(str(v) if i < 4 else v for i, v in enumerate(item)))  # type: ignore[arg-type]
    category = getattr(item, "category", None)
    if category is None:
        category = item.notification.category
    tz = getattr(item, "recipient_timezone", None)
    if tz is None:
        tz = item.recipient.timezone
    return PreferenceCheck(
        delivery_id=str(item.id), recipient_id=str(item.recipient_id),
        channel=str(item.channel), category=str(category), recipient_timezone=tz or "UTC",
        is_test=bool(getattr(item, "is_test", False)),
    )


_PROFILES_SQL = f"""
SELECT recipient_id::text, version, channels, categories, quiet_hours_start, quiet_hours_end,
       quiet_hours_timezone, frequency_caps
FROM {PreferenceProfile._meta.db_table} WHERE recipient_id = ANY(%s::uuid[])
"""


def _json(value: Any) -> Any:
    # Django has psycopg return jsonb as text (JSONField decodes it).
    return json.loads(value) if isinstance(value, str | bytes) else value


def preferences_for(*, recipient_ids: Iterable[Any]) -> dict[str, Preferences]:
    """recipient id → Preferences: from the cache, the misses in one query (then cached)."""
    ids = list(dict.fromkeys(str(rid) for rid in recipient_ids))
    found = cache_read(ids)
    missing = [rid for rid in ids if rid not in found]
    if missing:
        loaded = dict.fromkeys(missing, DEFAULTS)
        # One plain statement (dispatch asks this for every task; compiling the ORM query
        # cost more than running it).
        with connection.cursor() as cursor:
            cursor.execute(_PROFILES_SQL, [missing])
            for rid, version, channels, categories, start, end, tz, caps in cursor.fetchall():
                loaded[rid] = Preferences.from_values(
                    version=version, channels=_json(channels), categories=_json(categories),
                    quiet_hours_start=start, quiet_hours_end=end, quiet_hours_timezone=tz,
                    frequency_caps=_json(caps))
        cache_fill(loaded)
        found.update(loaded)
    return found


def _evaluate(check: PreferenceCheck, prefs: Preferences, now: datetime,
              critical: frozenset[str]) -> tuple[Decision, CapRequest | None]:
    """The rules, in order. Critical categories skip everything but a disabled channel."""
    if check.channel in prefs.disabled_channels:
        return Decision.suppress(Reason.CHANNEL_DISABLED), None
    category = check.category.lower()
    if category in critical:
        return Decision.allow(Reason.CRITICAL), None
    if category in prefs.opted_out_categories:
        return Decision.suppress(Reason.CATEGORY_OPTED_OUT), None
    tz = zone(prefs.timezone or check.recipient_timezone)
    # Quiet hours hold what makes a sound; an in-app message waits in the inbox silently.
    window = (None if check.channel in SILENT_CHANNELS
              else prefs.channel_quiet_hours.get(check.channel) or prefs.quiet_hours)
    if window is not None:
        until = quiet_until(window=window, tz=tz, now=now)
        if until is not None:
            return Decision.hold(until), None
    cap = prefs.caps.get(category)
    if cap is not None:
        limit, period = cap
        label, ttl = cap_window(period=period, tz=tz, now=now)
        key = cap_key(recipient_id=check.recipient_id, category=category, period=period,
                      window=label, is_test=check.is_test)
        return Decision.allow(cap_key=key), CapRequest(key, check.delivery_id, limit, ttl)
    return Decision.allow(), None


def preference_decisions(
    *, deliveries: Sequence[DeliveryLike], now: datetime
) -> dict[str, Decision]:
    """delivery id → allow / suppress(reason) / hold(until) for a batch, at send time.

    Order: channel disabled → (critical category: allow) → category opted out → quiet hours
    (hold until the window ends, local time) → frequency cap. An ALLOW under a cap has
    reserved its place in the cap's window (atomically, idempotent per delivery id): call
    `frequency_cap_release` if the delivery then ends without being sent.

    Costs one cache round trip, at most one query (recipients not cached), and one Redis
    round trip when some category has a cap.
    """
    checks = [as_check(d) for d in deliveries]
    prefs = preferences_for(recipient_ids=[c.recipient_id for c in checks])
    critical = critical_categories()
    out: dict[str, Decision] = {}
    # The one message confirming a STOP goes although the channel is now off, at once (no
    # quiet hours) and outside any cap: only the delivery the opt-out names (no query unless
    # the batch has that category).
    confirmations = confirmation_deliveries(delivery_ids=[
        c.delivery_id for c in checks if c.category.lower() == CONFIRMATION_CATEGORY])
    pending: list[tuple[str, Decision, CapRequest]] = []
    for check in checks:
        if check.delivery_id in confirmations:
            out[check.delivery_id] = Decision.allow(Reason.OPT_OUT_CONFIRMATION)
            continue
        decision, request = _evaluate(check, prefs.get(check.recipient_id, DEFAULTS), now, critical)
        if request is None:
            out[check.delivery_id] = decision
        else:
            pending.append((check.delivery_id, decision, request))
    admitted = caps_reserve([request for _, _, request in pending])
    for (delivery_id, decision, _), ok in zip(pending, admitted, strict=True):
        out[delivery_id] = decision if ok else Decision.suppress(Reason.FREQUENCY_CAP)
    return out


def frequency_cap_release(*, decisions: Mapping[str, Decision]) -> None:
    """Gives back the cap places these allowed deliveries reserved (call it for deliveries
    that ended without a send: suppression list, render error, permanent failure)."""
    caps_release((d.cap_key, delivery_id) for delivery_id, d in decisions.items() if d.cap_key)


def channels_enabled_for(*, recipient_ids: Iterable[Any], channels: Sequence[str]
                         ) -> dict[str, list[str]]:
    """recipient id → those of `channels` the recipient has not turned off (accept time, when
    a send names no channels; send time still decides). Same cost as the decision."""
    prefs = preferences_for(recipient_ids=recipient_ids)
    return {rid: [c for c in channels if c not in p.disabled_channels] for rid, p in prefs.items()}


# -- API reads ----------------------------------------------------------------------------


def profile_get(*, recipient: Recipient) -> PreferenceProfile:
    """The stored profile, or an unsaved one with the defaults."""
    profile = PreferenceProfile.objects.filter(recipient=recipient).first()
    return profile or PreferenceProfile(recipient=recipient, client_id=recipient.client_id)


def preference_document(*, recipient: Recipient,
                        profile: PreferenceProfile | None = None) -> dict[str, Any]:
    """The API shape of a recipient's preferences (seed 000): every channel listed."""
    profile = profile or profile_get(recipient=recipient)
    channels: dict[str, Any] = {}
    for channel in Channel.values:
        spec = profile.channels.get(channel) or {}
        channels[channel] = {
            "enabled": spec.get("enabled", True) is not False,
            "frequency": "immediate",
            "quiet_hours": spec.get("quiet_hours") or None,
        }
    quiet_hours = None
    if profile.quiet_hours_start is not None and profile.quiet_hours_end is not None:
        quiet_hours = {
            "start": f"{profile.quiet_hours_start:%H:%M}",
            "end": f"{profile.quiet_hours_end:%H:%M}",
            "timezone": profile.quiet_hours_timezone or None,
        }
    return {
        "recipient": recipient.external_id,
        "timezone": profile.quiet_hours_timezone or recipient.timezone or "UTC",
        "channels": channels,
        "categories": dict(sorted(profile.categories.items())),
        "quiet_hours": quiet_hours,
        "frequency_caps": dict(sorted(profile.frequency_caps.items())),
        "critical_categories": sorted(critical_categories()),
        "version": profile.version,
        "updated_at": profile.updated_at,
    }


def consent_history(*, recipient: Recipient) -> QuerySet[ConsentRecord]:
    return ConsentRecord.objects.filter(recipient=recipient)


def recipients_for_number(*, channel: str, number: str) -> QuerySet[Recipient]:
    """Every client's recipients that a channel reaches at this E.164 number (WhatsApp sends
    to `whatsapp`, else `phone`, as Recipient.address_for does)."""
    if not number:  # never match the recipients without a number
        return Recipient.objects.none()
    # The numbers are encrypted: matched by their keyed hash (indexed).
    number_hash = pii_hash(number)
    if channel == Channel.WHATSAPP:
        query = Q(whatsapp_hash=number_hash) | (Q(whatsapp="") & Q(phone_hash=number_hash))
    else:
        query = Q(phone_hash=number_hash)
    return Recipient.objects.filter(query)
