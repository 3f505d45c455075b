"""The run pages in a real browser (headless Chromium, Debian's `chromium` package): the history
page and a run's page, each with no script at all (the charts are server-side SVG, so they show
where JavaScript does not run), laid out within a 1000 px wide screen without sideways scrolling,
loading nothing from the network, and showing hostile run data (a city named like markup) as text.
`make test` installs chromium when it is missing; without it these tests fail, they do not skip.

The pages have no script to report on themselves, so a test that measures the layout or listens
for blocked requests loads a probe copy: the page with one measuring script appended and that
script's hash added to its Content-Security-Policy, every other directive unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iotpipe.run.history import RunSummary, read_history
from iotpipe.run.models import QualityBreach, QualityPolicy, RunReport
from iotpipe.run.report_page import render_history_page, render_run_page
from tests.unit.run_history_lake import HistoryLake, RunSpec

PWNED = "document.body.setAttribute('data-pwned', 'yes')"
HOSTILE_CITIES = [
    f'<img src=x onerror="{PWNED}">',
    f"</script><script>{PWNED}</script>",
    "<!--",
]
SHOTS = Path("/tmp/iotpipe-report-pages")  # the screenshots, kept for a person to look at
RED, GREEN, BLUE = bytes.fromhex("c62828"), bytes.fromhex("1a7f37"), bytes.fromhex("0072b2")
ARN = "arn:aws:states:eu-west-1:123456789012:execution:iotpipe-pipeline:run-q"


def chromium() -> str:
    found = shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return found


def browse(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1000,2400", "--hide-scrollbars",
        *mode, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


PROBE = """(function () {
  var body = document.body, blocked = [];
  document.addEventListener("securitypolicyviolation", function (e) {
    blocked.push(e.violatedDirective + " " + e.blockedURI);
  });
  window.addEventListener("load", function () {
    var badge = document.querySelector(".status");
    body.setAttribute("data-probe", JSON.stringify({
      scrollWidth: document.documentElement.scrollWidth,
      badge: badge ? getComputedStyle(badge).backgroundColor : null,
      blocked: blocked
    }));
  });
})();"""


def probe(page: Path, tmp_path: Path, extra: str = "") -> dict:
    """What the page's probe copy measured: its scroll width at 1000 px, the status badge's
    colour (the page's style applied under its policy) and the requests its policy blocked."""
    digest = "'sha256-" + base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode() + "'"
    text = page.read_text()
    assert 'content="default-src' in text
    text = text.replace('content="default-src', f'content="script-src {digest}; default-src', 1)
    copy = tmp_path / f"{page.stem}-probe.html"
    copy.write_text(text.replace("</body>", f"{extra}<script>{PROBE}</script></body>"))
    dom = browse(copy, tmp_path / "probe-profile", "--dump-dom").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


class Dom(HTMLParser):
    """The dumped DOM: each figure's SVG count, bars and texts, and every tag seen."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: dict[str, dict] = {}
        self.tags: list[str] = []
        self.body: dict = {}
        self._figure: str | None = None
        self._in_text = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "body":
            self.body = attributes
        if tag == "figure":
            self._figure = attributes.get("id")
            self.figures[self._figure] = {"svg": 0, "bars": 0, "texts": []}
        elif self._figure and tag == "svg":
            self.figures[self._figure]["svg"] += 1
        elif self._figure and tag == "rect" and attributes.get("class") == "bar":
            self.figures[self._figure]["bars"] += 1
        self._in_text = tag == "text"

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        self._in_text = False

    def handle_data(self, data):
        if self._in_text and self._figure:
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


CITIES = [f"City {i:02d}" for i in range(45)]


@pytest.fixture(scope="module")
def history_page(tmp_path_factory) -> Path:
    """Four runs of very different sizes, one with hostile city names, one that broke the quality
    policy, rendered as `iotpipe report --html` does."""
    root = tmp_path_factory.mktemp("lake")
    lake = HistoryLake(root)
    lake.run(RunSpec("run-20261127T175321Z-9753", gold={("2024-01-01", city): 20 + i for i, city in
                     enumerate(CITIES)}, quarantined={"malformed_json": 5, "missing_reading": 2}, duplicates=3,
                     seconds=95))  # fmt: skip
    lake.run(RunSpec("run-2", gold={("2024-01-02", city): 700 for city in HOSTILE_CITIES},
                     quarantined={"malformed_json": 1}, seconds=40))  # fmt: skip
    lake.run(RunSpec("run-3", gold={("2024-01-03", "São Paulo"): 30000, ("2024-01-04", "Oslo"): 20000},
                     quarantined={"unparseable_event_time": 400, "malformed_json": 300}, seconds=600))  # fmt: skip
    runs = read_history(lake.storage, lake.settings.runs_uri)
    breached = runs[0].model_copy(update={
        "run_id": "run-4-breached", "status": "QUALITY_FAILED", "max_quarantine_ratio": 0.01,
        "quality_breaches": [{"rule": "max_quarantine_ratio", "figure": 0.0138, "threshold": 0.01,
                              "description": "quarantined / input"}],
    })  # fmt: skip
    runs = [breached, *[run.model_copy(update={"max_quarantine_ratio": 0.05}) for run in runs]]
    path = root / "history.html"
    path.write_text(render_history_page(runs, run_href=lambda run_id: f"{run_id}.html"), encoding="utf-8")
    return path


def quality_failed_report() -> RunReport:
    return RunReport(
        run_id="run-q", status="QUALITY_FAILED", trigger="console", gold_partitions=12, attempts=1,
        records={"input": 10_000, "gold": 9_700, "quarantined": 250, "duplicates": 50},
        quarantined_by_reason={"malformed_json": 150, "missing_city": 100}, finished_at="2026-11-27T18:00:00+00:00",
        started_at="2026-11-27T17:55:00+00:00", seconds=300.0, manifest="s3://artifacts/runs/run-q.json",
        reconciliation={"reconciles": True, "input": 10_000, "accounted": 10_000, "difference": 0},
        quality_policy=QualityPolicy(max_quarantine_ratio=0.01, on_breach="fail",
                                     max_quarantine_ratio_by_reason={"malformed_json": 0.01}),
        quality_breaches=[
            QualityBreach(rule="max_quarantine_ratio", figure=0.025, threshold=0.01, description="quarantined / input"),
            QualityBreach(rule="max_quarantine_ratio_by_reason:malformed_json", figure=0.015, threshold=0.01,
                          description="the line is not a JSON object"),
        ],
        maintenance={"seconds": 12.5, "tables": {"gold": {"files_before": 850, "files_rewritten": 840,
                                                          "files_written": 12, "files_after": 22}}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_page(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "run-q.html"
    path.write_text(render_run_page(quality_failed_report(), {"counts": {"batch_ms": 90_000, "batches": 3}}, ARN),
                    encoding="utf-8")  # fmt: skip
    return path


@pytest.mark.parametrize("which", ["history_page", "run_page"])
def test_a_page_has_no_script_and_its_charts_are_svg_in_the_page(which, request, tmp_path):
    page = request.getfixturevalue(which)
    assert "<script" not in page.read_text()
    dom = dump_dom(page, tmp_path)
    assert "script" not in dom.tags and dom.tags.count("svg") >= (5 if which == "history_page" else 1)


def test_the_history_pages_charts_show_every_run_and_the_policys_threshold(history_page, tmp_path):
    dom = dump_dom(history_page, tmp_path)
    assert set(dom.figures) == {"chart-quarantine", "chart-input", "chart-stages", "chart-cities", "chart-dates"}
    quarantine = dom.figures["chart-quarantine"]
    assert quarantine["bars"] >= 5 and "policy: max_quarantine_ratio" in quarantine["texts"]
    assert {"malformed_json", "missing_reading", "unparseable_event_time"} <= set(quarantine["texts"])
    assert {"0 %", "0.5 %", "1 %", "1.5 %"} <= set(quarantine["texts"])  # round ticks
    # 1 % is on the scale; 5 %, over three times the tallest bar, would flatten every bar: it is named instead
    assert "policy: max_quarantine_ratio: 5 %, above this scale" in quarantine["texts"]
    # runs of 2 and 50 thousand records on one log scale: every bar there, labelled in round powers of ten
    assert dom.figures["chart-input"]["bars"] == 4 and {"1k", "10k", "100k"} <= set(
        dom.figures["chart-input"]["texts"])  # fmt: skip
    cities = dom.figures["chart-cities"]
    assert cities["bars"] == 40 and "São Paulo" in cities["texts"]  # the other 10 in a sentence, not a bar
    assert "the other 10 cities have" in history_page.read_text()


def test_city_names_that_look_like_markup_are_shown_as_text(history_page, tmp_path):
    dom = dump_dom(history_page, tmp_path)
    assert "img" not in dom.tags and "data-pwned" not in dom.body
    shown = {city if len(city) <= 40 else city[:39] + "\u2026" for city in HOSTILE_CITIES}  # long names are cut
    assert shown <= set(dom.figures["chart-cities"]["texts"])


@pytest.mark.parametrize("which", ["history_page", "run_page"])
def test_a_page_fits_a_1000_px_screen_without_sideways_scrolling(which, request, tmp_path):
    measured = probe(request.getfixturevalue(which), tmp_path)
    assert measured["scrollWidth"] <= 1000 and measured["blocked"] == []


def test_the_status_is_coloured_by_severity_with_the_pages_own_style(run_page, tmp_path):
    assert probe(run_page, tmp_path)["badge"] == "rgb(198, 40, 40)"  # QUALITY_FAILED: red


def test_a_request_the_page_would_make_is_blocked(run_page, tmp_path):
    measured = probe(run_page, tmp_path, extra='<img src="https://example.com/pixel.png">')
    assert any("example.com" in blocked for blocked in measured["blocked"])


@pytest.mark.parametrize("which", ["history_page", "run_page"])
def test_the_screenshot_at_1000_px_shows_the_status_and_the_charts_in_colour(which, request, tmp_path):
    SHOTS.mkdir(exist_ok=True)
    shot = SHOTS / f"{which}.png"
    browse(request.getfixturevalue(which), tmp_path / "profile", f"--screenshot={shot}")
    width, _, pixels = png_pixels(shot)
    counts = {name: sum(1 for p in pixels if p == colour) for name, colour in (("red", RED), ("blue", BLUE))}
    assert width == 1000
    assert counts["red"] > 300, counts  # the red status badge (and, on the history, the threshold)
    assert counts["blue"] > 2000, counts  # bars


def test_the_run_page_links_to_the_execution_and_the_dashboard_and_nothing_else(run_page):
    links = re.findall(r'href="([^"]+)"', run_page.read_text())
    assert links == [
        f"https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{ARN}",
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/"
        "iotpipe-operations",
        "history.html",
    ]


def test_the_history_page_names_no_url_but_its_run_pages(history_page):
    text = history_page.read_text()
    assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text) == []
    assert set(re.findall(r'href="([^"]+)"', text)) == {"run-4-breached.html", "run-20261127T175321Z-9753.html",
                                                       "run-2.html", "run-3.html"}  # fmt: skip
    assert not re.search(r"<[^>]*\b(src|action|data)\s*=", text)


def test_a_run_summary_without_stage_timings_draws_no_stage_chart():
    run = RunSummary(run_id="r", status="INTERRUPTED", trigger="unknown", finished_at="2024-01-01T00:00:00+00:00",
                     records={"input": 5, "gold": 5, "quarantined": 0, "duplicates": 0}, attempts=0)  # fmt: skip
    assert 'id="chart-stages"' not in render_history_page([run])
