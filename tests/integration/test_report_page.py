"""The run history page in a real browser (headless Chromium, Debian's `chromium` package): it
draws its four charts without script errors, loads nothing from the network, and shows hostile
run data (a city named like markup) as text. `make test` installs chromium when it is missing;
without it these tests fail, they do not skip.

The page reports on itself in the DOM (see iotpipe.run.report_page): `data-charts-drawn` when the
script has drawn, `data-errors` for script errors, `data-csp-violations` for anything the
Content-Security-Policy blocked, which is every request: the policy allows no source at all.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iotpipe.run.history import read_history
from iotpipe.run.report_page import CHART_COUNT, render_page
from tests.unit.run_history_lake import HistoryLake, RunSpec

PWNED = "document.body.setAttribute('data-pwned', 'yes')"
HOSTILE_CITIES = [
    f'<img src=x onerror="{PWNED}">',
    f"</script><script>{PWNED}</script>",
    "<!--",
]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def chromium() -> str:
    found = shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return found


def browse(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1000,2000",
        *mode, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class Dom(HTMLParser):
    """The dumped DOM's body attributes, each figure's bar count and SVG text, and every tag seen."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.figures: dict[str, dict] = {}
        self.tags: list[str] = []
        self._figure: str | None = None
        self._in_svg_text = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "body":
            self.body = attributes
        elif tag == "figure":
            self._figure = attributes.get("id")
            self.figures[self._figure] = {"bars": attributes.get("data-bars"), "svg": 0, "texts": []}
        elif tag == "svg" and self._figure:
            self.figures[self._figure]["svg"] += 1
        self._in_svg_text = tag == "text"

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        self._in_svg_text = False

    def handle_data(self, data):
        if self._in_svg_text and self._figure:
            self.figures[self._figure]["texts"].append(data)


def dump_dom(page: Path, tmp_path: Path) -> Dom:
    return Dom(browse(page, tmp_path / "profile", "--dump-dom").stdout)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, as Chromium writes them."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, channels)]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """A history of three runs, one with hostile city names, rendered as `iotpipe report --html` does."""
    root = tmp_path_factory.mktemp("lake")
    lake = HistoryLake(root)
    lake.run(RunSpec("run-1", gold={("2024-01-01", "Oslo"): 40, ("2024-01-02", "Lyon"): 30},
                     quarantined={"bad_json": 5, "missing_field": 2}, duplicates=3, seconds=95))  # fmt: skip
    lake.run(RunSpec("run-2", gold={("2024-01-02", city): 7 for city in HOSTILE_CITIES},
                     quarantined={"bad_json": 1}, seconds=40))  # fmt: skip
    lake.run(RunSpec("run-3", gold={("2024-01-03", "São Paulo"): 12}, seconds=30))
    path = root / "report.html"
    path.write_text(render_page(read_history(lake.storage, lake.settings.runs_uri)), encoding="utf-8")
    return path


def test_the_page_draws_every_chart_without_script_errors_or_blocked_requests(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    assert dom.body.get("data-charts-drawn") == str(CHART_COUNT)
    assert "data-errors" not in dom.body and "data-csp-violations" not in dom.body
    assert set(dom.figures) == {"chart-outcomes", "chart-quarantine", "chart-gold", "chart-stages"}
    for name, figure in dom.figures.items():
        assert figure["svg"] == 1 and int(figure["bars"]) > 0, name
    assert {"gold", "quarantined", "duplicates"} <= set(dom.figures["chart-outcomes"]["texts"])
    assert {"bad_json", "missing_field"} <= set(dom.figures["chart-quarantine"]["texts"])
    assert {"2024-01-01", "2024-01-02", "2024-01-03", "Oslo", "São Paulo"} <= set(dom.figures["chart-gold"]["texts"])
    # stacked bars: outcomes of 3 runs (3 + 2 + 1 non-zero parts); Gold: 1 + 4 + 1 cities over 3 dates
    assert dom.figures["chart-outcomes"]["bars"] == "6" and dom.figures["chart-gold"]["bars"] == "6"


def test_city_names_that_look_like_markup_are_shown_as_text_and_never_run(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    assert "data-pwned" not in dom.body
    assert "img" not in dom.tags and dom.tags.count("script") == 2
    assert set(HOSTILE_CITIES) <= set(dom.figures["chart-gold"]["texts"])


def test_the_screenshot_shows_the_charts_in_colour(page, tmp_path):
    shot = tmp_path / "page.png"
    browse(page, tmp_path / "profile", f"--screenshot={shot}")
    _, _, pixels = png_pixels(shot)
    palette = {bytes.fromhex(c) for c in ("4e79a7", "f28e2b", "e15759")}  # gold, quarantined, duplicates
    coloured = sum(1 for p in pixels if p in palette)
    assert coloured > 2000, f"only {coloured} pixels in the bar colours"


def test_the_page_names_no_url_outside_its_text(page):
    text = page.read_text()
    assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text.replace(SVG_NAMESPACE, "")) == []
    assert not re.search(r"\b(src|href|action|data)\s*=", re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S))


# ---------------------------------------------------------------- the checks can fail
def test_a_request_the_page_would_make_is_blocked_and_reported(page, tmp_path):
    leaky = tmp_path / "leaky.html"
    leaky.write_text(page.read_text().replace("</body>", '<img src="https://example.com/pixel.png"></body>'))
    dom = dump_dom(leaky, tmp_path)
    assert "example.com" in dom.body.get("data-csp-violations", "")


def test_a_script_error_is_reported_and_nothing_claims_to_be_drawn(page, tmp_path):
    broken = tmp_path / "broken.html"
    text = re.sub(r'(<script type="application/json" id="history-data">).*?(</script>)', r"\1{\2",
                  page.read_text(), flags=re.S)  # fmt: skip
    broken.write_text(text)
    dom = dump_dom(broken, tmp_path)
    assert "JSON" in dom.body.get("data-errors", "") and "data-charts-drawn" not in dom.body
