"""Charts as inline SVG, drawn on the server: they show wherever HTML shows (a browser with
JavaScript off, an e-mail, an S3 object preview), and need nothing but this module, which the
Lambda layer carries without a plotting library.

Every text a chart shows (run ids, cities, reason codes) is escaped: markup in the data is shown
as text. Scales are chosen for the data: round ticks (1, 2, 2.5 or 5 times a power of ten), a
log scale where bars differ by orders of magnitude, shares of each run's whole where only the
mix can be compared. The colours are Okabe and Ito's, told apart with colour-blindness too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from markupsafe import Markup, escape

# Okabe-Ito, then a neutral grey for "other".
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")
OTHER_COLOUR = "#999999"
BAR_COLOUR = "#0072b2"
BREACH_COLOUR = "#c62828"
THRESHOLD_COLOUR = "#c62828"
WIDTH = 920  # the SVG's own units: it is drawn at the width of its container


def tag(name: str, attributes: dict, content: str = "") -> Markup:
    """An SVG element; attribute values and text content are escaped (content that is already
    Markup, such as child elements, is kept)."""
    text = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{escape(value)}"'
        for key, value in attributes.items()
        if value is not None
    )
    return Markup(f"<{name}{text}>") + escape(content) + Markup(f"</{name}>")


def join(parts: Sequence[Markup]) -> Markup:
    return Markup("").join(parts)


def nice_step(span: float, count: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` into about `count` parts."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)


def linear_ticks(top: float, count: int = 5) -> list[float]:
    """Round ticks from 0 to at least `top`."""
    step = nice_step(top, count)
    return [round(i * step, 10) for i in range(int(math.ceil(top / step - 1e-9)) + 1)] if top > 0 else [0.0, 1.0]


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten from below `low` to above `high` (both > 0)."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**k for k in range(first, max(last, first + 1) + 1)]


def count_text(value: float) -> str:
    """`950`, `12k`, `1.5M`: a count as an axis shows it."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"


def percent_text(value: float) -> str:
    """A percentage axis label: `0 %`, `0.5 %`, `2.5 %`, `10 %`."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + " %"


def seconds_text(seconds: float) -> str:
    """`45 s`, `3m 04s`, `1h 02m`."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


@dataclass
class Series:
    name: str
    values: list[float]
    colour: str = BAR_COLOUR


@dataclass
class Marker:
    """A value drawn across each category's slot (a policy threshold), with its legend name."""

    name: str
    values: list[Optional[float]]
    colour: str = THRESHOLD_COLOUR


@dataclass
class Frame:
    """A plot area in an SVG of WIDTH x height."""

    height: int
    left: int = 64
    right: int = 16
    top: int = 12
    bottom: int = 56
    parts: list[Markup] = field(default_factory=list)

    @property
    def plot_width(self) -> float:
        return WIDTH - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    def svg(self, label: str, legend: Sequence[tuple[str, str, str]] = ()) -> Markup:
        """The chart, with a legend of (name, colour, kind: "box" or "line") under it, in as many
        rows as its entries need."""
        items, x, row = [], float(self.left), 0
        placed = []
        for name, colour, kind in legend:
            width = 22 + 7.0 * len(name) + 18
            if x + width > WIDTH and x > self.left:
                x, row = float(self.left), row + 1
            placed.append((x, row, name, colour, kind))
            x += width
        height = self.height + 18 * max(0, row)
        for x, row, name, colour, kind in placed:
            y = self.height - 12 + 18 * row
            if kind == "line":
                items.append(
                    tag(
                        "line",
                        {
                            "x1": x,
                            "x2": x + 18,
                            "y1": y - 4,
                            "y2": y - 4,
                            "stroke": colour,
                            "stroke_width": 2,
                            "stroke_dasharray": "5 3",
                        },
                    )
                )
            else:
                items.append(tag("rect", {"x": x, "y": y - 10, "width": 12, "height": 12, "fill": colour}))
            items.append(tag("text", {"x": x + 22, "y": y, "class": "legend"}, name))
        return tag(
            "svg",
            {"viewBox": f"0 0 {WIDTH} {height}", "role": "img", "aria-label": label},
            tag("title", {}, label) + join(self.parts) + join(items),
        )

    def y_axis(self, ticks: list[float], to_y: Callable[[float], float], label: Callable[[float], str]) -> None:
        for value in ticks:
            y = to_y(value)
            self.parts.append(
                tag("line", {"x1": self.left, "x2": self.left + self.plot_width, "y1": y, "y2": y, "class": "grid"})
            )
            self.parts.append(
                tag("text", {"x": self.left - 6, "y": y + 4, "text-anchor": "end", "class": "tick"}, label(value))
            )

    def x_labels(self, labels: Sequence[str], step: float) -> None:
        """Category labels under the slots, as many as fit (every n-th otherwise)."""
        every = max(1, math.ceil(len(labels) * 90 / self.plot_width))
        for i, text in enumerate(labels):
            if i % every and i != len(labels) - 1:
                continue
            x = self.left + step * (i + 0.5)
            self.parts.append(
                tag(
                    "text",
                    {"x": x, "y": self.top + self.plot_height + 16, "text-anchor": "middle", "class": "tick"},
                    text,
                )
            )


def empty(label: str, note: str, height: int = 80) -> Markup:
    frame = Frame(height=height)
    frame.parts.append(tag("text", {"x": frame.left, "y": height / 2, "class": "empty"}, note))
    return frame.svg(label)


def stacked_bars(
    label: str,
    categories: Sequence[str],
    tips: Sequence[str],
    series: Sequence[Series],
    axis: Callable[[float], str],
    markers: Sequence[Marker] = (),
    flagged: Sequence[bool] = (),
    height: int = 300,
    totals: Optional[Sequence[str]] = None,
) -> Markup:
    """Bars of stacked series per category on a linear axis with round ticks; `markers` are drawn
    as dashed lines across each category's slot; a flagged category's bar is outlined in red;
    `totals` are written above the bars."""
    if not categories:
        return empty(label, "no runs to show")
    frame = Frame(height=height, top=22 if totals else 12)
    sums = [sum(s.values[i] for s in series) for i in range(len(categories))]
    data_top = max(sums, default=0)
    # A marker far above the data (a threshold of 100 %) would flatten every bar: it is drawn on
    # the scale only when it is within three times the tallest bar, and named at the top otherwise.
    marked = [v for m in markers for v in m.values if v is not None]
    on_scale = [v for v in marked if not data_top or v <= 3 * data_top]
    top = max([data_top, *on_scale], default=0)
    ticks = linear_ticks(top or 1)
    scale = frame.plot_height / ticks[-1]

    def to_y(value: float) -> float:
        return frame.top + frame.plot_height - value * scale

    frame.y_axis(ticks, to_y, axis)
    step = frame.plot_width / len(categories)
    width = max(3.0, min(56.0, step * 0.7))
    for i in range(len(categories)):
        x, base = frame.left + step * i + (step - width) / 2, 0.0
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            rect = tag(
                "rect",
                {
                    "x": round(x, 2),
                    "y": round(to_y(base + value), 2),
                    "width": round(width, 2),
                    "height": round(max(0.5, value * scale), 2),
                    "fill": s.colour,
                    "class": "bar",
                },
                tag("title", {}, f"{tips[i]} - {s.name}: {axis(value)}"),
            )
            frame.parts.append(rect)
            base += value
        if flagged and flagged[i] and base > 0:
            frame.parts.append(
                tag(
                    "rect",
                    {
                        "x": round(x - 2, 2),
                        "y": round(to_y(base) - 2, 2),
                        "width": round(width + 4, 2),
                        "height": round(base * scale + 2, 2),
                        "fill": "none",
                        "stroke": BREACH_COLOUR,
                        "stroke_width": 2,
                    },
                )
            )
        if totals:
            frame.parts.append(
                tag(
                    "text",
                    {
                        "x": round(x + width / 2, 2),
                        "y": round(to_y(base) - 5, 2),
                        "text-anchor": "middle",
                        "class": "tick",
                    },
                    totals[i],
                )
            )
        for marker in markers:
            value = marker.values[i]
            if value is None or value > ticks[-1]:
                continue
            y = round(to_y(value), 2)
            frame.parts.append(
                tag(
                    "line",
                    {
                        "x1": round(frame.left + step * i, 2),
                        "x2": round(frame.left + step * (i + 1), 2),
                        "y1": y,
                        "y2": y,
                        "stroke": marker.colour,
                        "stroke_width": 2,
                        "stroke_dasharray": "5 3",
                    },
                    tag("title", {}, f"{tips[i]} - {marker.name}: {axis(value)}"),
                )
            )
    off_scale = sorted({v for m in markers for v in m.values if v is not None and v > ticks[-1]})
    if off_scale:
        names = ", ".join(dict.fromkeys(m.name for m in markers))
        frame.parts.append(
            tag(
                "text",
                {"x": frame.left + frame.plot_width, "y": frame.top + 10, "text-anchor": "end", "class": "tick"},
                f"{names}: {', '.join(axis(v) for v in off_scale)}, above this scale",
            )
        )
    frame.x_labels(categories, step)
    legend = [(s.name, s.colour, "box") for s in series if len(series) > 1]
    legend += [(m.name, m.colour, "line") for m in markers if any(v is not None for v in m.values)]
    return frame.svg(label, legend)


def log_bars(
    label: str, categories: Sequence[str], tips: Sequence[str], values: Sequence[float], unit: str, height: int = 240
) -> Markup:
    """One bar per category on a log scale (powers of ten), each labelled with its value: runs of
    28 thousand and of 900 thousand records both show."""
    shown = [v for v in values if v > 0]
    if not shown:
        return empty(label, f"no {unit} to show")
    frame = Frame(height=height, top=22)
    ticks = log_ticks(min(shown), max(shown))
    low, high = math.log10(ticks[0]), math.log10(ticks[-1])

    def to_y(value: float) -> float:
        return frame.top + frame.plot_height * (1 - (math.log10(value) - low) / (high - low))

    frame.y_axis(ticks, to_y, count_text)
    step = frame.plot_width / len(categories)
    width = max(3.0, min(56.0, step * 0.7))
    for i, value in enumerate(values):
        if value <= 0:
            continue
        x, y = frame.left + step * i + (step - width) / 2, to_y(value)
        frame.parts.append(
            tag(
                "rect",
                {
                    "x": round(x, 2),
                    "y": round(y, 2),
                    "width": round(width, 2),
                    "height": round(frame.top + frame.plot_height - y, 2),
                    "fill": BAR_COLOUR,
                    "class": "bar",
                },
                tag("title", {}, f"{tips[i]}: {value:,.0f} {unit}"),
            )
        )
        if step >= 40:
            frame.parts.append(
                tag(
                    "text",
                    {"x": round(x + width / 2, 2), "y": round(y - 5, 2), "text-anchor": "middle", "class": "tick"},
                    count_text(value),
                )
            )
    frame.x_labels(categories, step)
    return frame.svg(label)


def horizontal_bars(label: str, names: Sequence[str], values: Sequence[float], unit: str) -> Markup:
    """One bar per name, largest first as given, each labelled with its value."""
    if not names:
        return empty(label, f"no {unit} to show")
    row = 18
    longest = max(len(name) for name in names)
    frame = Frame(height=row * len(names) + 36, left=min(260, 12 + int(6.6 * longest)), right=80, top=4, bottom=30)
    top = max(values) or 1
    ticks = linear_ticks(top, 4)
    scale = frame.plot_width / ticks[-1]
    for value in ticks:
        x = round(frame.left + value * scale, 2)
        frame.parts.append(
            tag("line", {"x1": x, "x2": x, "y1": frame.top, "y2": frame.top + frame.plot_height, "class": "grid"})
        )
        frame.parts.append(
            tag(
                "text",
                {"x": x, "y": frame.top + frame.plot_height + 14, "text-anchor": "middle", "class": "tick"},
                count_text(value),
            )
        )
    for i, (name, value) in enumerate(zip(names, values)):
        y = frame.top + i * row
        shown = name if len(name) <= 40 else name[:39] + "\u2026"
        frame.parts.append(
            tag("text", {"x": frame.left - 6, "y": y + 13, "text-anchor": "end", "class": "tick"}, shown)
        )
        frame.parts.append(
            tag(
                "rect",
                {
                    "x": frame.left,
                    "y": y + 3,
                    "width": round(max(0.5, value * scale), 2),
                    "height": row - 6,
                    "fill": BAR_COLOUR,
                    "class": "bar",
                },
                tag("title", {}, f"{name}: {value:,.0f} {unit}"),
            )
        )
        frame.parts.append(
            tag("text", {"x": round(frame.left + value * scale + 4, 2), "y": y + 13, "class": "tick"}, f"{value:,.0f}")
        )
    return frame.svg(label)


def share_bar(label: str, parts: Sequence[tuple[str, float, str]], height: int = 46) -> Markup:
    """One bar of the whole's parts (name, value, colour), each part's share written under it."""
    total = sum(value for _, value, _ in parts)
    if total <= 0:
        return empty(label, "nothing to show", height)
    frame = Frame(height=height, left=0, right=0, top=0, bottom=height - 18)
    x, items = 0.0, []
    for name, value, colour in parts:
        if value <= 0:
            continue
        width = WIDTH * value / total
        frame.parts.append(
            tag(
                "rect",
                {"x": round(x, 2), "y": 0, "width": round(max(1.0, width), 2), "height": 18, "fill": colour},
                tag("title", {}, f"{name}: {value:,.0f} ({value / total:.2%})"),
            )
        )
        items.append((f"{name} {value / total:.2%}", colour, "box"))
        x += width
    return frame.svg(label, items)
