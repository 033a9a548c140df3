"""API keys: live and test keys look different, keep unique prefixes and authenticate."""

from __future__ import annotations

import pytest

from apps.clients.models import ApiKey
from apps.clients.selectors import api_key_authenticate
from apps.clients.services import (
    KEY_PREFIX_LEN,
    TEST_KEY_PREFIX_LEN,
    InvalidKey,
    api_key_create,
    generate_raw_key,
    key_prefix,
)
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


def test_test_keys_are_visibly_test_keys_and_keep_eight_random_prefix_characters() -> None:
    tenant = ClientFactory()
    keys = [api_key_create(client=tenant, name=f"t{i}", mode="test") for i in range(20)]
    for key, raw in keys:
        assert raw.startswith("nh_test_") and len(raw) > 40
        assert key.prefix == raw[:TEST_KEY_PREFIX_LEN] and len(key.prefix) == 16
        assert key.mode == "test" and key.is_test
        assert api_key_authenticate(raw_key=raw) == key
    assert len({key.prefix for key, _ in keys}) == 20


def test_live_keys_never_look_like_test_keys() -> None:
    for _ in range(200):
        raw = generate_raw_key()
        assert raw.startswith("nh_") and not raw.startswith("nh_test_")
        assert len(key_prefix(raw)) == KEY_PREFIX_LEN


def test_existing_style_keys_keep_their_twelve_character_prefix() -> None:
    tenant = ClientFactory()
    key, raw = api_key_create(client=tenant, name="demo",
                              raw_key="nh_demo_localdevelopmentonly0000000000000000")
    assert key.prefix == "nh_demo_loca" and key.mode == "live"
    assert api_key_authenticate(raw_key=raw) == key


@pytest.mark.parametrize(("raw", "mode"), [
    ("nh_test_" + "a" * 40, "live"),  # a live key must not pass for a test key
    ("nh_" + "a" * 40, "test"),
])
def test_a_key_whose_look_does_not_match_its_mode_is_refused(raw: str, mode: str) -> None:
    tenant = ClientFactory()
    with pytest.raises(InvalidKey):
        api_key_create(client=tenant, name="x", raw_key=raw, mode=mode)
    assert not ApiKey.objects.exists()
