from __future__ import annotations

from typing import Any

import pytest

from apps.segments.models import Segment
from tests.factories import RecipientFactory


@pytest.fixture
def pro_segment(client_tenant: Any) -> Segment:
    for i in range(3):
        RecipientFactory(client=client_tenant, external_id=f"pro{i}", attributes={"plan": "pro"})
    return Segment.objects.create(client=client_tenant, name="Pro", key="pro", definition={
        "all": [{"attribute": "plan", "op": "equals", "value": "pro"}]})
