from __future__ import annotations

from typing import Any

from django import template

from apps.core import charts

from ..metrics import dashboard

register = template.Library()


@register.inclusion_tag("admin/notifyhub_dashboard.html")
def delivery_dashboard() -> dict[str, Any]:
    data = dashboard()
    return {
        "data": data,
        "outcomes_chart": charts.stacked_bars(
            data.minutes, data.outcomes, title="Delivery outcomes per minute (last hour)"),
        "latency_chart": charts.lines(
            data.minutes, data.latency_ms, title="Accept → sent latency (ms)", unit=" ms"),
        "queue_chart": charts.horizontal_bars(data.queue_depth, title="Queue depth now"),
    }
