from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.segments.models import Segment
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


def test_change_page_shows_the_count_and_a_preview(admin_client: Any, client_tenant: Any) -> None:
    for i in range(25):
        RecipientFactory(client=client_tenant, external_id=f"p{i:02}", attributes={"plan": "pro"})
    RecipientFactory(client=client_tenant, external_id="free", attributes={"plan": "free"})
    segment = Segment.objects.create(client=client_tenant, name="Pro", key="pro", definition={
        "all": [{"attribute": "plan", "op": "equals", "value": "pro"}]})

    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(f"/admin/segments/segment/{segment.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "matching recipients now" in page.lower() and ">25<" in page
    assert "p00" in page and "p19" in page and "p20" not in page and "free" not in page
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(*)" in q["sql"]
              and "recipients_recipient" in q["sql"]]
    assert len(counts) == 1


def test_list_page_does_not_query_per_row(admin_client: Any, client_tenant: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get("/admin/segments/segment/").status_code == 200
        return len(ctx.captured_queries)

    Segment.objects.create(client=client_tenant, name="a", key="a", definition={"all": []})
    few = queries()
    for i in range(20):
        Segment.objects.create(client=client_tenant, name=f"s{i}", key=f"s{i}",
                               definition={"all": []})
    assert queries() <= few


def test_add_form_rejects_a_bad_definition_with_its_path(admin_client: Any, client_tenant: Any) -> None:
    response = admin_client.post("/admin/segments/segment/add/", {
        "client": client_tenant.pk, "name": "Bad", "key": "bad",
        "definition": '{"all": [{"attribute": "plan", "op": "nope", "value": 1}]}',
    })
    assert response.status_code == 200
    assert "definition.all[0].op" in response.content.decode()
    assert not Segment.objects.exists()

    response = admin_client.post("/admin/segments/segment/add/", {
        "client": client_tenant.pk, "name": "Good", "key": "good",
        "definition": '{"all": [{"attribute": "plan", "op": "equals", "value": "pro"}]}',
    })
    assert response.status_code == 302
    assert Segment.objects.get().key == "good"


def test_deleting_a_segment_goes_through_the_service_and_is_audited(
        admin_client: Any, admin_user: Any, client_tenant: Any) -> None:
    from apps.audit.models import AuditLog

    segment = Segment.objects.create(client=client_tenant, name="Gone", key="gone", definition={"all": []})
    kept = Segment.objects.create(client=client_tenant, name="Kept", key="kept", definition={"all": []})
    response = admin_client.post(f"/admin/segments/segment/{segment.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    admin_client.post("/admin/segments/segment/", {"action": "delete_selected", "post": "yes",
                                                   "_selected_action": [str(kept.pk)]})
    assert not Segment.objects.filter(client=client_tenant).exists()
    rows = list(AuditLog.objects.filter(action="segment.delete", client_id=client_tenant.pk).order_by("id"))
    assert [(r.object_id, r.changes["key"], r.actor_display) for r in rows] == [
        (str(segment.pk), "gone", admin_user.username), (str(kept.pk), "kept", admin_user.username)]
