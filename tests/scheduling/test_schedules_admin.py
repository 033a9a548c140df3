"""Recurring sends in the admin: saved through the services (the beat task follows), crontab
errors on their fields, next run shown in the schedule's time zone, no query per row."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.notifications.models import Notification
from apps.scheduling.models import RecurringSend
from apps.scheduling.services import recurring_send_create
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


def form(client: Any, template: Any, **changes: Any) -> dict[str, Any]:
    return {"client": client.pk, "name": "Digest", "enabled": "on", "template": template.pk,
            "variables": '{"name": "x"}', "channels": '["email"]', "priority": "normal",
            "category": "", "recipient_ids": '["ada"]', "segment": "", "minute": "0",
            "hour": "9", "day_of_week": "mon-fri", "day_of_month": "*", "month_of_year": "*",
            "timezone": "Asia/Tokyo", **changes}


@pytest.fixture(autouse=True)
def ada(client_tenant: Any) -> Any:
    return RecipientFactory(client=client_tenant, external_id="ada")


def test_add_change_and_delete_keep_the_beat_task_in_step(
    admin_client: Any, client_tenant: Any, email_template: Any
) -> None:
    response = admin_client.post("/admin/scheduling/recurringsend/add/",
                                 form(client_tenant, email_template))
    assert response.status_code == 302, response.content.decode()[:3000]
    recurring_send = RecurringSend.objects.get()
    task = PeriodicTask.objects.get(id=recurring_send.periodic_task_id)
    assert (task.crontab.hour, str(task.crontab.timezone)) == ("9", "Asia/Tokyo")

    page = admin_client.get(f"/admin/scheduling/recurringsend/{recurring_send.pk}/change/")
    assert page.status_code == 200
    assert " 09:00 Asia/Tokyo (" in page.content.decode()  # next run, in its time zone

    data = form(client_tenant, email_template, hour="21", timezone="Europe/Paris")
    data.pop("client")
    response = admin_client.post(f"/admin/scheduling/recurringsend/{recurring_send.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    task.crontab.refresh_from_db()
    assert (task.crontab.hour, str(task.crontab.timezone)) == ("21", "Europe/Paris")

    response = admin_client.post(f"/admin/scheduling/recurringsend/{recurring_send.pk}/delete/",
                                 {"post": "yes"})
    assert response.status_code == 302
    assert not RecurringSend.objects.exists()
    assert not PeriodicTask.objects.filter(id=task.id).exists()
    assert not CrontabSchedule.objects.filter(id=task.crontab_id).exists()


def test_invalid_crontab_and_target_are_shown_on_their_fields(
    admin_client: Any, client_tenant: Any, email_template: Any
) -> None:
    response = admin_client.post("/admin/scheduling/recurringsend/add/", form(
        client_tenant, email_template, minute="75", timezone="Nowhere/City", recipient_ids="[]"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert {"minute", "timezone"} <= set(errors)
    response = admin_client.post("/admin/scheduling/recurringsend/add/", form(
        client_tenant, email_template, recipient_ids="[]"))
    assert "recipient_ids" in response.context["adminform"].form.errors
    response = admin_client.post("/admin/scheduling/recurringsend/add/", form(
        client_tenant, email_template, variables="{}"))
    assert "variables" in response.context["adminform"].form.errors
    assert not RecurringSend.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="recurring-send:").exists()


def test_list_page_does_not_query_per_row_and_run_now_sends(
    admin_client: Any, client_tenant: Any, email_template: Any
) -> None:
    def make(n: int) -> None:
        for i in range(n):
            recurring_send_create(client=client_tenant, name=f"r{i}", template=email_template,
                                  variables={"name": "x"}, recipient_ids=["ada"], minute=str(i),
                                  hour="*")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get("/admin/scheduling/recurringsend/").status_code == 200
        return len(ctx.captured_queries)

    make(2)
    few = queries()
    make(15)
    assert queries() <= few

    first = RecurringSend.objects.order_by("created_at").first()
    assert first is not None
    admin_client.post("/admin/scheduling/recurringsend/",
                      {"action": "run_now", "_selected_action": [first.pk]})
    assert Notification.objects.get().metadata["recurring_send"] == str(first.pk)
