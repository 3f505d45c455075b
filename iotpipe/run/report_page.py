"""The run history as one self-contained HTML page: a table and four charts drawn by inline JS.

Nothing is loaded from the network: the page's Content-Security-Policy allows no source but its
own inline style and the one inline script whose hash it names, so even an injected tag could
neither run nor fetch. Run ids and city names are user data: the table escapes them, the charts
read them from a JSON block (with `<`, `>` and `&` escaped, so it cannot close its tag) and set
them as text nodes, never as markup.

The script marks the body when it is done (`data-charts-drawn`, the number of charts) and
records script errors and policy violations in `data-errors` and `data-csp-violations`, so a
headless browser's DOM dump shows whether the page worked.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

from iotpipe.lake.storage import Storage, join
from iotpipe.run.history import DEFAULT_LAST_RUNS, TABLE_COLUMNS, RunSummary, read_history, table_rows

CHART_COUNT = 4

_SCRIPT = r"""
(function () {
  var body = document.body;
  function note(attribute, text) {
    var previous = body.getAttribute(attribute);
    body.setAttribute(attribute, (previous ? previous + " | " : "") + text);
  }
  window.onerror = function (message, source, line) { note("data-errors", message + " (line " + line + ")"); };
  document.addEventListener("securitypolicyviolation", function (event) {
    note("data-csp-violations", event.violatedDirective + " " + event.blockedURI);
  });
  var SVG = "http://www.w3.org/2000/svg";  // an XML namespace name, not a request
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c"];
  var MAX_SERIES = 12;
  var history = JSON.parse(document.getElementById("history-data").textContent);
  var runs = history.runs.slice().reverse();  // oldest first, left to right

  function el(name, attributes, text) {
    var node = document.createElementNS(SVG, name);
    for (var key in attributes) { node.setAttribute(key, attributes[key]); }
    if (text !== undefined) { node.textContent = String(text); }
    return node;
  }

  function topSeries(series) {
    // At most MAX_SERIES series: the largest, and the rest summed as "other".
    var sized = series.map(function (s) {
      return {s: s, total: s.values.reduce(function (a, b) { return a + b; }, 0)};
    });
    sized.sort(function (a, b) { return b.total - a.total; });
    var kept = sized.slice(0, MAX_SERIES - 1).map(function (x) { return x.s; });
    var rest = sized.slice(MAX_SERIES - 1);
    if (rest.length === 1) { kept.push(rest[0].s); }
    if (rest.length > 1) {
      kept.push({name: "other (" + rest.length + ")", values: rest[0].s.values.map(function (_, i) {
        return rest.reduce(function (sum, x) { return sum + x.s.values[i]; }, 0);
      })});
    }
    return kept;
  }

  function stackedBars(id, categories, series, unit) {
    var figure = document.getElementById(id);
    var width = 920, height = 340, left = 70, right = 190, top = 16, bottom = 90;
    var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img"});
    series = topSeries(series);
    var totals = categories.map(function (_, i) {
      return series.reduce(function (sum, s) { return sum + (s.values[i] || 0); }, 0);
    });
    var max = Math.max.apply(null, [0].concat(totals));
    if (categories.length === 0 || max === 0) {
      svg.appendChild(el("text", {x: left, y: height / 2, "class": "empty"}, "nothing to show yet"));
      figure.appendChild(svg);
      figure.setAttribute("data-bars", "0");
      return;
    }
    var plotWidth = width - left - right, plotHeight = height - top - bottom;
    var step = plotWidth / categories.length, barWidth = Math.max(2, Math.min(48, step * 0.7));
    for (var t = 0; t <= 4; t++) {
      var value = max * t / 4, y = top + plotHeight - plotHeight * t / 4;
      svg.appendChild(el("line", {x1: left, x2: left + plotWidth, y1: y, y2: y, "class": "grid"}));
      svg.appendChild(el("text", {x: left - 6, y: y + 4, "text-anchor": "end", "class": "tick"},
                         value >= 100 ? Math.round(value).toLocaleString("en") : value.toFixed(1)));
    }
    svg.appendChild(el("text", {x: 12, y: top + plotHeight / 2, "class": "unit",
                                transform: "rotate(-90 12 " + (top + plotHeight / 2) + ")"}, unit));
    var bars = 0;
    categories.forEach(function (category, i) {
      var x = left + step * i + (step - barWidth) / 2, base = top + plotHeight;
      series.forEach(function (s, k) {
        var v = s.values[i] || 0;
        if (v <= 0) { return; }
        var h = plotHeight * v / max;
        base -= h;
        var rect = el("rect", {x: x, y: base, width: barWidth, height: Math.max(h, 0.5),
                               fill: PALETTE[k % PALETTE.length], "class": "bar"});
        rect.appendChild(el("title", {}, category + " - " + s.name + ": " + v.toLocaleString("en") + " " + unit));
        svg.appendChild(rect);
        bars++;
      });
      var label = category.length > 22 ? "\u2026" + category.slice(-21) : category;  // run ids differ at the end
      var lx = left + step * i + step / 2, ly = top + plotHeight + 12;
      svg.appendChild(el("text", {x: lx, y: ly, "text-anchor": "end", "class": "tick",
                                  transform: "rotate(-35 " + lx + " " + ly + ")"}, label));
    });
    series.forEach(function (s, k) {
      var y = top + 14 + 18 * k;
      svg.appendChild(el("rect", {x: width - right + 16, y: y - 10, width: 12, height: 12,
                                  fill: PALETTE[k % PALETTE.length]}));
      svg.appendChild(el("text", {x: width - right + 34, y: y, "class": "legend"}, s.name));
    });
    figure.appendChild(svg);
    figure.setAttribute("data-bars", String(bars));
  }

  function byName(names, valueOf) {
    return names.map(function (name) {
      return {name: name, values: runs.map(function (r) { return valueOf(r, name); })};
    });
  }
  function union(lists) {
    var seen = {};
    lists.forEach(function (list) { list.forEach(function (key) { seen[key] = true; }); });
    return Object.keys(seen).sort();
  }
  var labels = runs.map(function (r) { return r.run_id; });

  stackedBars("chart-outcomes", labels, byName(["gold", "quarantined", "duplicates"], function (r, name) {
    return r.records[name] || 0;
  }), "records");

  var reasons = union(runs.map(function (r) { return Object.keys(r.quarantined_by_reason); }));
  stackedBars("chart-quarantine", labels, byName(reasons, function (r, name) {
    return r.quarantined_by_reason[name] || 0;
  }), "records");

  var dates = union(runs.map(function (r) { return Object.keys(r.gold_rows_by_date_city); }));
  var cities = union(runs.map(function (r) {
    return [].concat.apply([], Object.keys(r.gold_rows_by_date_city).map(function (d) {
      return Object.keys(r.gold_rows_by_date_city[d]);
    }));
  }));
  stackedBars("chart-gold", dates, cities.map(function (city) {
    return {name: city, values: dates.map(function (date) {
      return runs.reduce(function (sum, r) { return sum + ((r.gold_rows_by_date_city[date] || {})[city] || 0); }, 0);
    })};
  }), "Gold rows");

  var stages = union(runs.map(function (r) { return Object.keys(r.stage_seconds); }));
  if (stages.length) {
    stackedBars("chart-stages", labels, byName(stages, function (r, name) {
      return r.stage_seconds[name] || 0;
    }), "seconds");
  } else {
    stackedBars("chart-stages", labels, byName(["whole run"], function (r) { return r.seconds || 0; }), "seconds");
  }
  body.setAttribute("data-charts-drawn", String(document.querySelectorAll("figure svg").length));
})();
"""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin-bottom: 24px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.status-FAILED, .status-UNRECONCILED { color: #b00020; font-weight: 600; }
figure { margin: 0 0 28px 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.grid { stroke: #eee; } .tick, .unit { font-size: 11px; fill: #555; } .legend { font-size: 12px; }
.empty { fill: #888; } .note { color: #666; font-size: 12px; }
"""

_NUMERIC = {"seconds", "input", "gold", "quarantined", "duplicates", "attempts"}


def script_hash(script: str) -> str:
    """The CSP source expression that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def content_security_policy() -> str:
    return (
        f"default-src 'none'; script-src {script_hash(_SCRIPT)}; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def _json_for_script(data: object) -> str:
    """JSON that cannot end its <script> element or open a comment, however the strings read."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _table(runs: list[RunSummary]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in TABLE_COLUMNS)
    body = []
    for run, row in zip(runs, table_rows(runs)):
        cells = []
        for name, value in zip(TABLE_COLUMNS, row):
            css = "n" if name in _NUMERIC else (f"status-{run.status}" if name == "status" else "")
            cells.append(f'<td class="{html.escape(css)}">{html.escape(value)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_page(runs: list[RunSummary], title: str = "iotpipe run history") -> str:
    """The page for `runs` (newest first, as `read_history` returns them)."""
    has_stages = any(run.stage_seconds for run in runs)
    problems = [f"{run.run_id}: {problem}" for run in runs for problem in run.problems]
    data = {"runs": [run.model_dump(mode="json") for run in runs]}
    stage_note = (
        "seconds per stage, from the state enter and exit times"
        if has_stages
        else "the manifests carry no stage timings: each bar is the whole run's seconds"
    )
    problem_list = (
        "<ul class='note'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>" if problems else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(content_security_policy())}">
<meta name="referrer" content="no-referrer">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{len(runs)} runs, newest first.</p>
{_table(runs)}
{problem_list}
<figure id="chart-outcomes"><figcaption>Records per run by outcome</figcaption></figure>
<figure id="chart-quarantine"><figcaption>Quarantined records per run by reason</figcaption></figure>
<figure id="chart-gold"><figcaption>Gold rows by date and city (runs shown)</figcaption></figure>
<figure id="chart-stages"><figcaption>Time per stage</figcaption><p class="note">{html.escape(stage_note)}</p></figure>
<script type="application/json" id="history-data">{_json_for_script(data)}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def history_page_uri(runs_uri: str, run_id: str) -> str:
    return join(runs_uri, f"{run_id}.html")


def write_history_page(storage: Storage, runs_uri: str, run_id: str, last: int = DEFAULT_LAST_RUNS) -> str:
    """The page of the last `last` runs, written beside run `run_id`'s manifest; returns its URI.
    Its cost is bounded by `last` (one listing, two reads per run), not by the lake's history."""
    uri = history_page_uri(runs_uri, run_id)
    storage.write_bytes(uri, render_page(read_history(storage, runs_uri, last)).encode("utf-8"))
    return uri
