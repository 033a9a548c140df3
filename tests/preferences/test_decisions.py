"""preference_decisions(): the send-time verdict for a batch, with `now` passed in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.cache import cache

from apps.notifications.services import notification_send
from apps.preferences.caps import caps_count
from apps.preferences.models import ConsentSource, PreferenceProfile
from apps.preferences.selectors import (
    Decision,
    PreferenceCheck,
    Verdict,
    channels_enabled_for,
    frequency_cap_release,
    preference_decisions,
)
from apps.preferences.services import ChangeContext, PreferenceChanges, QuietHours, preference_update
from apps.preferences.snapshot import Preferences, cache_fill, cache_key, cache_read, cache_store
from apps.preferences.timing import Window
from tests.factories import RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db

NOON_UTC = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # a Monday; 14:00 in Paris
CONTEXT = ChangeContext(source=ConsentSource.API, actor="test")


def set_prefs(recipient: Any, **changes: Any) -> PreferenceProfile:
    return preference_update(recipient=recipient, changes=PreferenceChanges(**changes),
                             context=CONTEXT)


def decide(recipient: Any, *, channel: str = "email", category: str = "updates",
           now: datetime = NOON_UTC, delivery_id: str = "d1") -> Decision:
    check = PreferenceCheck(delivery_id, str(recipient.pk), channel, category, recipient.timezone)
    return preference_decisions(deliveries=[check], now=now)[delivery_id]


def quiet(start: str, end: str, tz: str = "") -> dict[str, Any]:
    window = Window.parse(f"{start}-{end}")
    return {"set_quiet_hours": True, "quiet_hours": QuietHours(window.start, window.end, tz)}


def test_without_preferences_everything_is_allowed(ada: Any) -> None:
    assert decide(ada) == Decision.allow()


def test_a_disabled_channel_suppresses(ada: Any) -> None:
    set_prefs(ada, channels={"sms": {"enabled": False}})
    assert decide(ada, channel="sms") == Decision.suppress("channel_disabled")
    assert decide(ada, channel="email").allowed


def test_an_opted_out_category_suppresses_on_every_channel(ada: Any) -> None:
    set_prefs(ada, categories={"marketing": False, "updates": True})
    for channel in ("email", "sms", "push"):
        assert decide(ada, channel=channel, category="marketing") == Decision.suppress(
            "category_opted_out")
    assert decide(ada, category="updates").allowed


def test_critical_categories_bypass_quiet_hours_and_caps_but_not_a_disabled_channel(ada: Any) -> None:
    set_prefs(ada, channels={"sms": {"enabled": False}}, **quiet("00:00", "23:59"),
              frequency_caps={"marketing": {"limit": 1, "period": "day"}})
    assert decide(ada, category="marketing").verdict == Verdict.HOLD
    decision = decide(ada, category="security")
    assert decision.allowed and decision.reason == "critical_category"
    assert decide(ada, category="OTP").allowed
    assert decide(ada, channel="sms", category="otp") == Decision.suppress("channel_disabled")


def test_critical_categories_come_from_the_setting(ada: Any, settings: Any) -> None:
    settings.PREFERENCES_CRITICAL_CATEGORIES = {"billing"}
    set_prefs(ada, **quiet("00:00", "23:59"))
    assert decide(ada, category="billing").allowed
    assert decide(ada, category="security").verdict == Verdict.HOLD


@pytest.mark.parametrize(
    ("now", "until"),
    [
        # 22:00-07:00 Paris (UTC+2 in June): 23:30 local → 07:00 the next morning.
        (datetime(2025, 6, 2, 21, 30, tzinfo=UTC), datetime(2025, 6, 3, 5, 0, tzinfo=UTC)),
        # After midnight, still inside: 03:00 local → 07:00 the same day.
        (datetime(2025, 6, 3, 1, 0, tzinfo=UTC), datetime(2025, 6, 3, 5, 0, tzinfo=UTC)),
        # The start is inside, the end is not.
        (datetime(2025, 6, 2, 20, 0, tzinfo=UTC), datetime(2025, 6, 3, 5, 0, tzinfo=UTC)),
        (datetime(2025, 6, 3, 5, 0, tzinfo=UTC), None),
        (datetime(2025, 6, 2, 19, 59, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_crossing_midnight_hold_until_the_local_end(
    ada: Any, now: datetime, until: datetime | None
) -> None:
    set_prefs(ada, **quiet("22:00", "07:00"))
    decision = decide(ada, now=now)
    if until is None:
        assert decision.allowed
    else:
        assert decision == Decision.hold(until, "quiet_hours")


def test_quiet_hours_within_a_day(ada: Any) -> None:
    set_prefs(ada, **quiet("13:00", "15:30"))  # Paris; NOON_UTC is 14:00 there
    assert decide(ada) == Decision.hold(datetime(2025, 6, 2, 13, 30, tzinfo=UTC))
    assert decide(ada, now=datetime(2025, 6, 2, 13, 30, tzinfo=UTC)).allowed


def test_quiet_hours_across_the_spring_forward_night(ada: Any) -> None:
    # Paris moves from UTC+1 to UTC+2 at 02:00 on 2025-03-30: 07:00 that morning is 05:00 UTC.
    set_prefs(ada, **quiet("22:00", "07:00"))
    decision = decide(ada, now=datetime(2025, 3, 29, 22, 30, tzinfo=UTC))  # 23:30 CET
    assert decision.until == datetime(2025, 3, 30, 5, 0, tzinfo=UTC)


def test_quiet_hours_across_the_fall_back_night(ada: Any) -> None:
    # Paris moves from UTC+2 to UTC+1 at 03:00 on 2025-10-26: 07:00 that morning is 06:00 UTC.
    set_prefs(ada, **quiet("22:00", "07:00"))
    decision = decide(ada, now=datetime(2025, 10, 25, 21, 30, tzinfo=UTC))  # 23:30 CEST
    assert decision.until == datetime(2025, 10, 26, 6, 0, tzinfo=UTC)


def test_a_window_ending_in_the_skipped_hour_ends_when_the_clocks_jump(ada: Any) -> None:
    set_prefs(ada, **quiet("22:00", "02:30"))  # 02:30 does not exist in Paris on 2025-03-30
    decision = decide(ada, now=datetime(2025, 3, 30, 0, 45, tzinfo=UTC))  # 01:45 CET
    assert decision.until == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert decide(ada, now=datetime(2025, 3, 30, 1, 0, tzinfo=UTC)).allowed


def test_the_quiet_hours_time_zone_overrides_the_recipients(ada: Any) -> None:
    set_prefs(ada, **quiet("07:00", "09:00", "America/New_York"))  # NOON_UTC is 08:00 there
    assert decide(ada).until == datetime(2025, 6, 2, 13, 0, tzinfo=UTC)


def test_the_recipients_own_time_zone_is_used(client_tenant: Any) -> None:
    tokyo = RecipientFactory(client=client_tenant, timezone="Asia/Tokyo")
    set_prefs(tokyo, **quiet("20:00", "08:00"))  # NOON_UTC is 21:00 in Tokyo
    assert decide(tokyo).until == datetime(2025, 6, 2, 23, 0, tzinfo=UTC)


def test_a_channels_own_quiet_hours_replace_the_profiles(ada: Any) -> None:
    set_prefs(ada, channels={"sms": {"quiet_hours": "13:00-16:00"}}, **quiet("01:00", "02:00"))
    assert decide(ada, channel="sms").until == datetime(2025, 6, 2, 14, 0, tzinfo=UTC)
    assert decide(ada, channel="email").allowed


def test_a_frequency_cap_allows_n_per_window_counting_each_delivery_once(ada: Any) -> None:
    set_prefs(ada, frequency_caps={"marketing": {"limit": 2, "period": "day"}})
    first = decide(ada, category="marketing", delivery_id="m1")
    assert first.allowed and first.cap_key
    assert decide(ada, category="marketing", delivery_id="m2").allowed
    assert decide(ada, category="marketing", delivery_id="m3") == Decision.suppress("frequency_cap")
    # Deciding an admitted delivery again (retry, deferral) neither counts nor refuses it.
    assert decide(ada, category="marketing", delivery_id="m1").allowed
    assert caps_count(first.cap_key) == 2
    assert decide(ada, category="updates", delivery_id="u1").allowed
    # The next local day is a new window (Paris midnight is 22:00 UTC).
    assert decide(ada, category="marketing", delivery_id="m4",
                  now=datetime(2025, 6, 2, 22, 0, tzinfo=UTC)).allowed


def test_a_released_place_can_be_used_again(ada: Any) -> None:
    set_prefs(ada, frequency_caps={"marketing": {"limit": 1, "period": "hour"}})
    first = decide(ada, category="marketing", delivery_id="m1")
    assert decide(ada, category="marketing", delivery_id="m2").verdict == Verdict.SUPPRESS
    frequency_cap_release(decisions={"m1": first})
    assert decide(ada, category="marketing", delivery_id="m2").allowed


def test_one_batch_is_capped_in_order_and_a_hold_does_not_count(ada: Any) -> None:
    set_prefs(ada, frequency_caps={"marketing": {"limit": 2, "period": "week"}},
              channels={"sms": {"quiet_hours": "13:00-16:00"}})
    rid = str(ada.pk)
    checks = [PreferenceCheck("held", rid, "sms", "marketing", ada.timezone)] + [
        PreferenceCheck(f"m{i}", rid, "email", "marketing", ada.timezone) for i in range(4)]
    decisions = preference_decisions(deliveries=checks, now=NOON_UTC)
    assert decisions["held"].verdict == Verdict.HOLD
    assert [decisions[f"m{i}"].verdict for i in range(4)] == [
        Verdict.ALLOW, Verdict.ALLOW, Verdict.SUPPRESS, Verdict.SUPPRESS]


def test_deliveries_and_tuples_are_accepted(client_tenant: Any) -> None:
    TemplateFactory(client=client_tenant, key="promo")
    result = notification_send(client=client_tenant, template_id="promo", variables={"name": "x"},
                               recipients=[{"id": "grace", "email": "g@example.com"}],
                               category="marketing")
    delivery = result.notification.deliveries.select_related("recipient", "notification").get()
    set_prefs(delivery.recipient, categories={"marketing": False})
    decisions = preference_decisions(deliveries=[delivery], now=NOON_UTC)
    assert decisions[str(delivery.id)] == Decision.suppress("category_opted_out")
    as_tuple = ("t1", delivery.recipient_id, "email", "updates", "UTC")
    assert preference_decisions(deliveries=[as_tuple], now=NOON_UTC)["t1"].allowed


def test_a_warm_batch_makes_no_query_and_a_cold_one_makes_one(
    client_tenant: Any, django_assert_num_queries: Any
) -> None:
    people = [RecipientFactory(client=client_tenant) for _ in range(5)]
    set_prefs(people[0], categories={"marketing": False})
    set_prefs(people[1], channels={"sms": {"enabled": False}})
    checks = [PreferenceCheck(f"d{i}", str(p.pk), "sms", "marketing", "UTC")
              for i, p in enumerate(people)]
    cache.delete_many([cache_key(p.pk) for p in people])  # start cold
    with django_assert_num_queries(1):
        cold = preference_decisions(deliveries=checks, now=NOON_UTC)
    with django_assert_num_queries(0):
        warm = preference_decisions(deliveries=checks, now=NOON_UTC)
    assert cold == warm
    assert [warm[f"d{i}"].reason for i in range(5)] == [
        "category_opted_out", "channel_disabled", "", "", ""]


def test_a_change_invalidates_the_cached_preferences(
    ada: Any, django_capture_on_commit_callbacks: Any, django_assert_num_queries: Any
) -> None:
    assert decide(ada, category="marketing").allowed  # now cached: the defaults
    with django_capture_on_commit_callbacks(execute=True):
        set_prefs(ada, categories={"marketing": False})
    with django_assert_num_queries(0):  # the commit hook stored the fresh value
        assert decide(ada, category="marketing") == Decision.suppress("category_opted_out")
    with django_capture_on_commit_callbacks(execute=True):
        set_prefs(ada, categories={"marketing": True})
    assert decide(ada, category="marketing").allowed


def test_a_readers_stale_fill_never_overwrites_a_writers_value(ada: Any) -> None:
    rid = str(ada.pk)
    fresh = Preferences(version=2, disabled_channels=frozenset({"sms"}))
    cache_store({rid: fresh})
    cache_fill({rid: Preferences(version=1)})  # a reader that loaded the row before the change
    assert cache_read([rid])[rid] == fresh


def test_channels_enabled_for_drops_the_channels_a_recipient_turned_off(
    ada: Any, client_tenant: Any
) -> None:
    other = RecipientFactory(client=client_tenant)
    set_prefs(ada, channels={"sms": {"enabled": False}})
    enabled = channels_enabled_for(recipient_ids=[ada.pk, other.pk], channels=["email", "sms"])
    assert enabled == {str(ada.pk): ["email"], str(other.pk): ["email", "sms"]}


def test_test_key_sends_count_in_frequency_cap_windows_of_their_own(ada: Any) -> None:
    """A test key's sends never use up a recipient's live cap, nor the reverse."""
    set_prefs(ada, frequency_caps={"marketing": {"limit": 1, "period": "day"}})

    def check(delivery_id: str, is_test: bool) -> PreferenceCheck:
        return PreferenceCheck(delivery_id, str(ada.pk), "email", "marketing", ada.timezone,
                               is_test=is_test)

    decisions = preference_decisions(
        deliveries=[check("t1", True), check("t2", True), check("l1", False)], now=NOON_UTC)
    assert [decisions[d].reason for d in ("t1", "t2", "l1")] == ["", "frequency_cap", ""]
    assert decisions["t1"].cap_key != decisions["l1"].cap_key
    assert preference_decisions(deliveries=[check("l2", False)], now=NOON_UTC)["l2"] == (
        Decision.suppress("frequency_cap"))


def test_a_batch_reads_its_preferences_in_constant_round_trips_and_queries(
    client_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dispatch chunk: one query and two cache round trips cold, no query and one round trip
    warm, whatever the number of recipients."""
    import redis.connection
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    recipients = RecipientFactory.create_batch(30, client=client_tenant)
    set_prefs(recipients[0], categories={"updates": False})
    cache.delete_many([cache_key(r.pk) for r in recipients])
    cache_fill({"warm-up": Preferences()})  # the fill's script is loaded on the server once
    checks = [PreferenceCheck(f"d{i}", str(r.pk), "email", "updates") for i, r in enumerate(recipients)]
    round_trips = []
    send = redis.connection.AbstractConnection.send_packed_command
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command",
                        lambda self, *a, **k: (round_trips.append(1), send(self, *a, **k))[1])

    with CaptureQueriesContext(connection) as cold_queries:
        cold = preference_decisions(deliveries=checks, now=NOON_UTC)
    cold_trips, round_trips[:] = len(round_trips), []
    with CaptureQueriesContext(connection) as warm_queries:
        warm = preference_decisions(deliveries=checks, now=NOON_UTC)

    assert (len(cold_queries), cold_trips) == (1, 2)
    assert (len(warm_queries), len(round_trips)) == (0, 1)
    assert cold == warm
    assert cold["d0"] == Decision.suppress("category_opted_out")
    assert all(cold[f"d{i}"].allowed for i in range(1, 30))


def test_a_fill_caches_every_entry_with_the_expiry_in_batches_and_never_overwrites(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from apps.preferences import snapshot

    settings.PREFERENCES_CACHE_SECONDS = 120
    monkeypatch.setattr(snapshot, "FILL_BATCH", 2)
    ids = [f"fill-{i}" for i in range(5)]
    cache.delete_many([cache_key(rid) for rid in ids])
    written = Preferences(version=7, opted_out_categories=frozenset({"news"}))
    cache_store({ids[3]: written})  # a writer's value, set after a change committed

    cache_fill({rid: Preferences(version=1) for rid in ids})

    found = cache_read(ids)
    assert [found[rid].version for rid in ids] == [1, 1, 1, 7, 1]
    assert found[ids[3]] == written
    client = snapshot._client(cache._cache)  # type: ignore[attr-defined]
    ttls = [client.ttl(cache.make_and_validate_key(cache_key(rid))) for rid in ids]
    assert all(0 < ttl <= 120 for ttl in ttls)
