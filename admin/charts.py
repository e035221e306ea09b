"""Server-rendered SVG charts (no JavaScript). Pure: values in, SVG text out.

Every chart has a ``<title>`` and ``<desc>`` (read by screen readers, ``role="img"``) and the
caller shows the same numbers in a table, so nothing is only visible as a picture. Text is
escaped; colours come from the stylesheet through class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 640
HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 12, 40


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[int, ...]
    css_class: str = "s1"


def _text(value: str) -> str:
    """XML-safe text: escaped, without the control characters XML 1.0 forbids."""
    return escape("".join(c for c in value if c >= " " or c in "\t\n"))


def format_count(value: float) -> str:
    """Short human numbers for axes: 950, 1.2k, 3.4M, 5.6G."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _nice_max(value: int) -> int:
    top: int = max(value, 1)
    magnitude: int = 10 ** (len(str(top)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= top:
            return step * magnitude
    return top


def _axes(labels: Sequence[str], top: int) -> list[str]:
    plot_h = HEIGHT - _TOP - _BOTTOM
    parts = []
    for i in range(5):
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{format_count(top * i / 4)}</text>"
        )
    every = max(1, len(labels) // 8)
    slot = (WIDTH - _LEFT - _RIGHT) / max(len(labels), 1)
    for i, label in enumerate(labels):
        if i % every == 0:
            x = _LEFT + slot * (i + 0.5)
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - _BOTTOM + 16}" '
                f'text-anchor="middle">{_text(label)}</text>'
            )
    return parts


def _frame(title: str, desc: str, body: list[str], legend: Sequence[Series]) -> str:
    keys = []
    for i, s in enumerate(legend):
        x = _LEFT + i * 160
        keys.append(
            f'<rect class="{s.css_class}" x="{x}" y="{HEIGHT - 14}" width="10" '
            f'height="10"/><text class="tick" x="{x + 14}" y="{HEIGHT - 5}">'
            f"{_text(s.name)}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">'
        f"<title>{_text(title)}</title><desc>{_text(desc)}</desc>"
        + "".join(body)
        + "".join(keys)
        + "</svg>"
    )


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series]) -> str:
    """Grouped bars, one group per label; an empty chart says so."""
    if not labels or not series:
        return empty_chart(title, "no data yet")
    top = _nice_max(max((v for s in series for v in s.values), default=0))
    plot_h = HEIGHT - _TOP - _BOTTOM
    slot = (WIDTH - _LEFT - _RIGHT) / len(labels)
    bar_w = max(slot * 0.8 / len(series), 1.0)
    body = _axes(labels, top)
    for j, s in enumerate(series):
        for i, value in enumerate(s.values):
            h = plot_h * value / top
            x = _LEFT + slot * i + slot * 0.1 + bar_w * j
            body.append(
                f'<rect class="{s.css_class}" x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{_text(labels[i])}: '
                f"{_text(s.name)} {value}</title></rect>"
            )
    desc = "; ".join(f"{s.name}: {sum(s.values)} in total" for s in series)
    return _frame(title, desc, body, series)


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series]) -> str:
    """One polyline per series over the labels; an empty chart says so."""
    if not labels or not series:
        return empty_chart(title, "no data yet")
    top = _nice_max(max((v for s in series for v in s.values), default=0))
    plot_h = HEIGHT - _TOP - _BOTTOM
    slot = (WIDTH - _LEFT - _RIGHT) / len(labels)
    body = _axes(labels, top)
    for s in series:
        points = " ".join(
            f"{_LEFT + slot * (i + 0.5):.1f},{_TOP + plot_h - plot_h * v / top:.1f}"
            for i, v in enumerate(s.values)
        )
        body.append(f'<polyline class="line {s.css_class}" points="{points}"/>')
        body.extend(
            f'<circle class="{s.css_class}" r="3" cx="{point.split(",")[0]}" '
            f'cy="{point.split(",")[1]}"/>'
            for point in points.split()
        )
    desc = "; ".join(f"{s.name}: last value {s.values[-1] if s.values else 0}" for s in series)
    return _frame(title, desc, body, series)


def empty_chart(title: str, message: str) -> str:
    """A framed placeholder that says why there is nothing to draw."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart empty" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT // 2}"><title>{_text(title)}: {_text(message)}</title>'
        f'<rect class="placeholder" x="1" y="1" width="{WIDTH - 2}" height="{HEIGHT // 2 - 2}"/>'
        f'<text class="empty-text" x="{WIDTH // 2}" y="{HEIGHT // 4 + 5}" text-anchor="middle">'
        f"{_text(message)}</text></svg>"
    )
