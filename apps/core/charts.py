"""Small server-side SVG charts for the admin: no JavaScript, no external assets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = {
    "sent": "#4c78a8", "delivered": "#54a24b", "bounced": "#e45756", "failed": "#b279a2",
    "retry_scheduled": "#f58518", "p50": "#4c78a8", "p95": "#e45756",
}
DEFAULT_COLOR = "#9d9d9d"


def _frame(width: int, height: int, body: str, title: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every text value below is escaped
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="font:11px sans-serif;background:#fff">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _legend(names: Sequence[str], x: int, y: int) -> str:
    out, offset = [], 0
    for name in names:
        color = PALETTE.get(name, DEFAULT_COLOR)
        out.append(f'<rect x="{x + offset}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + offset + 14}" y="{y}">{escape(name)}</text>')
        offset += 24 + 7 * len(name)
    return "".join(out)


def stacked_bars(
    labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str,
    width: int = 720, height: int = 220,
) -> SafeString:
    """One bar per label, stacked by series (e.g. outcomes per minute)."""
    left, bottom, top = 40, 30, 24
    plot_h = height - bottom - top
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    step = (width - left - 10) / max(len(labels), 1)
    parts = [f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>',
             _legend(list(series), left + 260, 14),
             f'<text x="4" y="{top + 8}">{peak:g}</text><text x="4" y="{height - bottom}">0</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
             'stroke="#ccc"/>']
    for i, label in enumerate(labels):
        y: float = height - bottom
        for name, values in series.items():
            h = values[i] / peak * plot_h
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{left + i * step:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{PALETTE.get(name, DEFAULT_COLOR)}">'
                    f"<title>{escape(label)} {escape(name)}: {values[i]:g}</title></rect>"
                )
        if i % max(len(labels) // 6, 1) == 0:
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 12}">{escape(label)}</text>')
    return _frame(width, height, "".join(parts), title)


def lines(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str, unit: str = "",
    width: int = 720, height: int = 220,
) -> SafeString:
    left, bottom, top = 48, 30, 24
    plot_h = height - bottom - top
    peak = max((v for values in series.values() for v in values if v is not None), default=0) or 1
    step = (width - left - 10) / max(len(labels) - 1, 1)
    parts = [f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>',
             _legend(list(series), left + 260, 14),
             f'<text x="4" y="{top + 8}">{peak:.0f}{escape(unit)}</text>'
             f'<text x="4" y="{height - bottom}">0</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
             'stroke="#ccc"/>']
    for name, values in series.items():
        points = [
            f"{left + i * step:.1f},{height - bottom - v / peak * plot_h:.1f}"
            for i, v in enumerate(values) if v is not None
        ]
        if points:
            color = PALETTE.get(name, DEFAULT_COLOR)
            parts.append(f'<polyline fill="none" stroke-width="2" stroke="{color}" '
                         f'points="{" ".join(points)}"/>')
            parts.extend(
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{color}"/>'
                for p in points
            )
    for i, label in enumerate(labels):
        if i % max(len(labels) // 6, 1) == 0:
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 12}">{escape(label)}</text>')
    return _frame(width, height, "".join(parts), title)


def horizontal_bars(values: dict[str, float], *, title: str, width: int = 360) -> SafeString:
    row, left = 22, 90
    height = 28 + row * len(values)
    peak = max(values.values(), default=0) or 1
    parts = [f'<text x="4" y="14" font-weight="bold">{escape(title)}</text>']
    for i, (name, value) in enumerate(values.items()):
        y = 24 + i * row
        w = value / peak * (width - left - 60)
        parts.append(f'<text x="4" y="{y + 13}">{escape(name)}</text>'
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="16" fill="#4c78a8"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 13}">{value:g}</text>')
    return _frame(width, height, "".join(parts), title)
