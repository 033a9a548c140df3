"""The inbox widget in a real browser (Chromium through Playwright) against the real stack:
the live server (API, demo page, static inbox.js), a Celery worker storing in-app deliveries,
and the stream process (`python -m apps.stream`) the widget's EventSource connects to.

- a message sent through the API appears in the widget without a reload;
- marking it read updates the badge and the API's counts; the panel is keyboard usable;
- a dropped connection (the stream process killed, messages sent meanwhile, restarted)
  resumes without losing or repeating a message."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.clients.models import Client
from apps.inbox import cors
from apps.inbox.models import InboxMessage
from tests.support.browser import screenshot
from tests.support.processes import wait_for
from tests.support.sandbox import free_port
from tests.support.stream import StreamProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stream(worker_env: dict[str, str]) -> Iterator[StreamProcess]:
    env = {**worker_env, "INBOX_CORS_CACHE_SECONDS": "0", "INBOX_STREAM_HEARTBEAT_SECONDS": "5"}
    process = StreamProcess(env, port=free_port()).start()  # a port kept across restarts
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture
def demo(settings: Any, live_server: Any, stream: StreamProcess, clean_sandbox: Any,
         start_worker: Any) -> APIClient:
    """The demo client and recipient, the demo page on, pointed at this stream; a worker."""
    out = io.StringIO()
    call_command("demo", "--json", stdout=out)
    settings.DEMO_PAGES = True
    settings.INBOX_STREAM_URL = f"http://127.0.0.1:{stream.port}/api/v1/inbox/stream"
    Client.objects.filter(slug="demo").update(inbox_allowed_origins=[live_server.url])
    cors.clear_cache()
    start_worker()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.DEMO_API_KEY}")
    return api


def send_in_app(api: APIClient, name: str) -> str:
    response = api.post("/api/v1/notifications", {
        "recipients": ["demo_user"], "template_id": "welcome", "variables": {"name": name},
        "channels": ["in_app"], "priority": "high"}, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["id"])


def open_demo(page: Any, live_server: Any) -> Any:
    page.goto(f"{live_server.url}/demo/inbox/")
    widget = page.locator(".nhi")
    widget.wait_for()
    page.wait_for_selector('.nhi[data-live="open"]')
    return widget


def titles(page: Any) -> list[str]:
    texts = page.locator(".nhi-item .nhi-title").all_inner_texts()
    return [re.sub(r"^Unread:\s*", "", t.strip()) for t in texts]


def test_a_message_sent_through_the_api_appears_live_and_reading_it_updates_badge_and_counts(
    page: Any, live_server: Any, demo: APIClient
) -> None:
    from playwright.sync_api import expect

    open_demo(page, live_server)
    bell = page.get_by_role("button", name="Notifications")
    expect(bell).to_have_attribute("aria-expanded", "false")
    expect(page.locator(".nhi-badge")).to_be_hidden()

    # Sent through the API: it appears without a reload, announced to screen readers
    send_in_app(demo, "Ada")
    expect(page.locator(".nhi-badge")).to_have_text("1", timeout=30_000)
    expect(bell).to_have_accessible_name("Notifications (1 unread)")
    expect(page.locator(".nhi [aria-live=polite]")).to_have_text("New notification: Welcome to Acme, Ada!")

    # The bell opens a dialog (keyboard: Enter), focus moves into it
    bell.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Notifications")
    expect(dialog).to_be_visible()
    expect(bell).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("heading", name="Notifications")).to_be_focused()
    assert titles(page) == ["Welcome to Acme, Ada!"]
    send_in_app(demo, "Grace")
    expect(page.locator(".nhi-item")).to_have_count(2, timeout=30_000)
    assert titles(page) == ["Welcome to Acme, Grace!", "Welcome to Acme, Ada!"]
    expect(page.locator(".nhi-badge")).to_have_text("2")
    screenshot(page, "inbox-widget", clip={"x": 444, "y": 0, "width": 580, "height": 460})

    # Mark one read: the badge and the API's counts follow
    dialog.get_by_role("button", name="Mark as read").first.click()
    expect(page.locator(".nhi-badge")).to_have_text("1")
    token = page.locator("script[data-token]").get_attribute("data-token")
    inbox = APIClient()
    inbox.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    wait_for(lambda: inbox.get("/api/v1/inbox/counts").json()["unread"] == 1, timeout=10,
             message="API counts")
    # Mark all read, archive one
    dialog.get_by_role("button", name="Mark all as read").click()
    expect(page.locator(".nhi-badge")).to_be_hidden()
    assert inbox.get("/api/v1/inbox/counts").json() == {"unread": 0, "unseen": 0, "total": 2}
    dialog.get_by_role("button", name="Archive").first.click()
    expect(page.locator(".nhi-item")).to_have_count(1)
    expect(page.locator(".nhi-item .nhi-btn").first).to_be_focused()  # focus stays in the list
    assert inbox.get("/api/v1/inbox/counts").json()["total"] == 1

    # The preference center link (from /inbox/me), then Escape closes and focus returns
    assert "/preferences/" in (dialog.get_by_role("link", name="Notification preferences")
                               .get_attribute("href") or "")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(bell).to_be_focused()


def test_a_dropped_connection_resumes_without_losing_or_repeating_messages(
    page: Any, live_server: Any, demo: APIClient, stream: StreamProcess
) -> None:
    from playwright.sync_api import expect

    open_demo(page, live_server)
    send_in_app(demo, "one")
    expect(page.locator(".nhi-badge")).to_have_text("1", timeout=30_000)

    # The stream process dies (every connection dropped); two messages are sent meanwhile
    stream.kill()
    page.wait_for_selector('.nhi[data-live="reconnecting"]')
    send_in_app(demo, "two")
    send_in_app(demo, "three")
    wait_for(lambda: InboxMessage.objects.count() == 3, timeout=30, message="stored meanwhile")

    # It comes back: the widget reconnects after the last seq it showed, and gets both
    stream.start().wait_ready()
    expect(page.locator(".nhi-badge")).to_have_text("3", timeout=45_000)
    page.wait_for_selector('.nhi[data-live="open"]')
    send_in_app(demo, "four")
    expect(page.locator(".nhi-badge")).to_have_text("4", timeout=30_000)

    page.get_by_role("button", name="Notifications").click()
    expect(page.locator(".nhi-item")).to_have_count(4)
    # Newest first by seq (commit order: two and three may be stored in either order)
    assert titles(page) == list(InboxMessage.objects.order_by("-seq").values_list("title", flat=True))
    assert sorted(titles(page)) == sorted(f"Welcome to Acme, {n}!" for n in ("one", "two", "three", "four"))
    seqs = page.locator(".nhi-item").evaluate_all("items => items.map(i => i.dataset.seq)")
    assert seqs == sorted(set(seqs), key=int, reverse=True)  # each once, newest first


def test_the_token_is_refreshed_through_the_host_pages_hook_before_it_expires(
    page: Any, live_server: Any, demo: APIClient, settings: Any
) -> None:
    from playwright.sync_api import expect

    # A token of 65 s: the widget asks the host page's hook for a new one 60 s before expiry
    settings.INBOX_TOKEN_TTL_SECONDS = 65
    open_demo(page, live_server)
    first = page.locator("script[data-token]").get_attribute("data-token")
    with page.expect_response(lambda r: r.url.endswith("/demo/inbox/token"), timeout=20_000) as answer:
        pass
    fresh = answer.value.json()["token"]
    assert fresh and fresh != first
    # The stream reconnects with the new token (the query string carries it) and stays live
    page.wait_for_function("t => performance.getEntriesByType('resource').some("
                           "e => e.name.includes('/inbox/stream?token=' + encodeURIComponent(t)))",
                           arg=fresh, timeout=10_000)
    send_in_app(demo, "after refresh")
    expect(page.locator(".nhi-badge")).to_have_text("1", timeout=30_000)


def test_a_stream_ended_by_its_tokens_expiry_reconnects_with_a_fresh_token(
    page: Any, live_server: Any, demo: APIClient, settings: Any
) -> None:
    from playwright.sync_api import expect

    # A token of 3 s: the stream ends with `token_expired` (its pass runs every 5 s here) about
    # when the widget's own refresh (5 s at the earliest) is due; either way the widget gets a
    # fresh token through the host page's hook and the stream stays live with it
    settings.INBOX_TOKEN_TTL_SECONDS = 3
    open_demo(page, live_server)
    first = page.locator("script[data-token]").get_attribute("data-token")
    with page.expect_response(lambda r: r.url.endswith("/demo/inbox/token"), timeout=20_000) as answer:
        pass
    fresh = answer.value.json()["token"]
    assert fresh and fresh != first
    page.wait_for_function("t => performance.getEntriesByType('resource').some("
                           "e => e.name.includes('/inbox/stream?token=' + encodeURIComponent(t)))",
                           arg=fresh, timeout=10_000)
    send_in_app(demo, "after expiry")
    expect(page.locator(".nhi-badge")).to_have_text("1", timeout=30_000)


def test_the_widget_speaks_the_recipients_language(
    page: Any, live_server: Any, demo: APIClient
) -> None:
    from playwright.sync_api import expect

    from apps.recipients.models import Recipient

    Recipient.objects.filter(external_id="demo_user").update(locale="fr-CA")
    send_in_app(demo, "Marie")
    wait_for(lambda: InboxMessage.objects.exists(), timeout=30, message="stored")
    open_demo(page, live_server)
    bell = page.get_by_role("button", name="Notifications (1 non lue(s))")
    expect(bell).to_be_visible()
    bell.click()
    dialog = page.get_by_role("dialog", name="Notifications")
    expect(dialog.get_by_role("button", name="Tout marquer comme lu")).to_be_visible()
    expect(dialog.get_by_role("link", name="Préférences de notification")).to_be_visible()
    dialog.get_by_role("button", name="Marquer comme lue").click()
    expect(page.locator(".nhi [aria-live=polite]")).to_have_text("Marquée comme lue")


def test_load_more_reads_the_next_page_without_repeating_a_message(
    page: Any, live_server: Any, demo: APIClient
) -> None:
    from playwright.sync_api import expect

    for i in range(23):
        send_in_app(demo, f"n{i}")
    wait_for(lambda: InboxMessage.objects.count() == 23, timeout=60, message="23 stored")
    open_demo(page, live_server)
    page.get_by_role("button", name="Notifications (23 unread)").click()
    expect(page.locator(".nhi-item")).to_have_count(20)  # the widget's page
    page.get_by_role("button", name="Load more").click()
    expect(page.locator(".nhi-item")).to_have_count(23)
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    assert titles(page) == list(InboxMessage.objects.order_by("-seq").values_list("title", flat=True))
