"""The run pages a data-quality owner opens: one per run, and the history of the last runs.

ReportStatus writes both beside the run manifests: `<runs>/<run_id>.html` (the run: its status
coloured by severity, records, quality breaches against the policy, reconciliation, errors,
table maintenance, and on AWS links to the execution and the operations dashboard) and
`<runs>/history.html` (the last runs: a table and charts of the quarantined share against the
policy's threshold, input records, time per stage and Gold rows by city and date). `iotpipe
report --html` writes the history page too.

Each page is one self-contained file with no script at all: the charts are SVG drawn here
(iotpipe.run.charts), so they show in a browser with JavaScript off, an e-mail or an S3 preview.
Its Content-Security-Policy allows no source but its own style element (by hash): the page can
fetch nothing, and an injected tag could neither run nor load. The templates are Jinja2's with
autoescape on: run ids, cities and reason codes are user data, shown as text.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from iotpipe.lake.cleaning_rules import describe
from iotpipe.lake.storage import Storage, is_s3, join
from iotpipe.run import charts
from iotpipe.run.history import (
    DEFAULT_LAST_RUNS,
    STAGES,
    RunSummary,
    error_line,
    percent,
    quality_text,
    read_history,
    stage_seconds,
)
from iotpipe.run.models import RunReport
from iotpipe.run.quality import format_breach
from iotpipe.run.report import console_url, format_duration, reconciliation_problem, summary_line

HISTORY_PAGE = "history.html"
MAX_CITIES = 40  # the city chart's bars; the rest are summed as one, named with how many they are
MAX_DATES = 62  # the date chart's newest dates

# Status colours by severity: green, amber, red; grey for a run that handed its data on.
SEVERITY = {
    "SUCCEEDED": "ok",
    "SUCCEEDED_WITH_STEP_ERROR": "warning",
    "SUCCEEDED_WITH_QUALITY_WARNING": "warning",
    "DEFERRED": "neutral",
    "NOTHING_TO_DO": "neutral",
    "FAILED": "bad",
    "UNRECONCILED": "bad",
    "QUALITY_FAILED": "bad",
    "INTERRUPTED": "bad",
}

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 16px 20px;
  max-width: 1200px; color: #1f2328; }
h1 { font-size: 22px; margin: 4px 0 8px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { padding: 3px 6px; border-bottom: 1px solid #d8dee4; text-align: left; vertical-align: top; }
th { font-weight: 600; background: #f6f8fa; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.runs { width: 100%; font-size: 13px; } td.id { overflow-wrap: anywhere; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600;
  font-size: 12px; }
.status.ok { background: #1a7f37; } .status.warning { background: #9a6700; }
.status.bad { background: #c62828; } .status.neutral { background: #57606a; }
.verdict-no, .breach { color: #c62828; font-weight: 600; } .verdict-yes { color: #1a7f37; font-weight: 600; }
figure { margin: 0 0 20px; } figcaption { font-weight: 600; margin-bottom: 2px; }
svg { width: 100%; height: auto; display: block; }
.grid { stroke: #e4e8ec; } .tick { font-size: 11px; fill: #57606a; } .legend { font-size: 12px; fill: #1f2328; }
.empty { fill: #6e7781; font-size: 13px; }
.note { color: #57606a; font-size: 13px; } .links a { margin-right: 16px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.mono { overflow-wrap: anywhere; } td.code { white-space: nowrap; }
"""

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def severity(status: str) -> str:
    """ok, warning, bad or neutral; a status added later is bad until it is listed on purpose."""
    return SEVERITY.get(status, "bad")


def style_hash(style: str = _STYLE) -> str:
    """The CSP source expression that allows exactly this style element."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"


def content_security_policy() -> str:
    return f"default-src 'none'; style-src {style_hash()}; base-uri 'none'; form-action 'none'"


def _duration(seconds: Optional[float]) -> str:
    return "" if seconds is None else format_duration(seconds)


def _render(template: str, title: str, **values) -> str:
    return _ENVIRONMENT.get_template(template).render(
        title=title,
        csp=content_security_policy(),
        style=Markup(_STYLE),
        severity=severity,
        duration=_duration,
        percent=percent,
        **values,
    )


# ------------------------------------------------------------------ the history page
def _run_label(run: RunSummary) -> str:
    """A run on a chart's axis: when it started (`11-27 17:53`), or its id if unknown."""
    when = run.started_at or run.finished_at
    return when[5:16].replace("T", " ") if when and len(when) >= 16 else run.run_id


def _quarantine_chart(runs: list[RunSummary]) -> Markup:
    reasons: dict[str, int] = {}
    for run in runs:
        for reason, count in run.quarantined_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
    ranked = sorted(reasons, key=lambda r: (-reasons[r], r))
    kept, rest = ranked[: len(charts.PALETTE)], ranked[len(charts.PALETTE) :]
    if len(rest) == 1:  # one more reason is shown as itself, not as "other"
        kept, rest = ranked, []

    def share(run: RunSummary, codes: list[str]) -> float:
        total = run.records.get("input", 0)
        return 100 * sum(run.quarantined_by_reason.get(code, 0) for code in codes) / total if total else 0.0

    series = [
        charts.Series(code, [share(run, [code]) for run in runs], colour)
        for code, colour in zip(kept, (*charts.PALETTE, charts.OTHER_COLOUR))
    ]
    if rest:
        series.append(
            charts.Series(f"{len(rest)} other reasons", [share(run, rest) for run in runs], charts.OTHER_COLOUR)
        )
    threshold = charts.Marker(
        "policy: max_quarantine_ratio",
        [None if run.max_quarantine_ratio is None else 100 * run.max_quarantine_ratio for run in runs],
    )
    breached = [any(b["rule"].startswith("max_quarantine_ratio") for b in run.quality_breaches) for run in runs]
    return charts.stacked_bars(
        "Quarantined share of each run's input, by reason, with the policy's threshold",
        [_run_label(run) for run in runs],
        [f"{run.run_id} ({run.status})" for run in runs],
        series,
        charts.percent_text,
        markers=[threshold],
        flagged=breached,
        height=320,
    )


def _stage_chart(runs: list[RunSummary]) -> Optional[Markup]:
    timed = [run for run in runs if run.stage_seconds]
    if not timed:
        return None
    colours = dict(zip(STAGES, charts.PALETTE))

    def share(run: RunSummary, stage: str) -> float:
        total = sum(run.stage_seconds.values())
        return 100 * run.stage_seconds.get(stage, 0) / total if total else 0.0

    return charts.stacked_bars(
        "Time per run by stage: each stage's share of the run, the run's duration above its bar",
        [_run_label(run) for run in timed],
        [run.run_id for run in timed],
        [charts.Series(stage, [share(run, stage) for run in timed], colours[stage]) for stage in STAGES],
        charts.percent_text,
        totals=[charts.seconds_text(sum(run.stage_seconds.values())) for run in timed],
        height=280,
    )


def _gold_charts(runs: list[RunSummary]) -> tuple[Markup, Optional[str], Markup, Optional[str]]:
    cities: dict[str, int] = {}
    dates: dict[str, int] = {}
    for run in runs:
        for date, by_city in run.gold_rows_by_date_city.items():
            for city, rows in by_city.items():
                cities[city] = cities.get(city, 0) + rows
                dates[date] = dates.get(date, 0) + rows
    ranked = sorted(cities, key=lambda c: (-cities[c], c))
    names, values = ranked[:MAX_CITIES], [cities[c] for c in ranked[:MAX_CITIES]]
    city_note = None
    if len(ranked) > MAX_CITIES:
        # The rest as a sentence, not as a bar: their sum would set the scale and dwarf every city.
        rest = ranked[MAX_CITIES:]
        city_note = (
            f"The {MAX_CITIES} cities with the most rows; the other {len(rest)} cities have "
            f"{sum(cities[c] for c in rest):,} rows together."
        )
    city_chart = charts.horizontal_bars("Gold rows by city", names, values, "Gold rows")
    shown_dates = sorted(dates)[-MAX_DATES:]
    date_note = f"The newest {MAX_DATES} of {len(dates)} dates." if len(dates) > MAX_DATES else None
    date_chart = charts.stacked_bars(
        "Gold rows by event date",
        [d[5:] if len(shown_dates) > 12 else d for d in shown_dates],
        shown_dates,
        [charts.Series("Gold rows", [dates[d] for d in shown_dates])],
        charts.count_text,
        height=240,
    )
    return city_chart, city_note, date_chart, date_note


def render_history_page(
    runs: list[RunSummary], title: str = "iotpipe run history", run_href: Callable[[str], Optional[str]] | None = None
) -> str:
    """The page for `runs` (newest first, as `read_history` returns them). `run_href` gives the
    link to a run's own page, if it has one."""
    oldest_first = list(reversed(runs))
    figures = [
        {
            "id": "chart-quarantine",
            "caption": "Quarantined share of input per run, by reason",
            "note": "The dashed line is the quality policy's max_quarantine_ratio each run was held to; a bar "
            "outlined in red broke it (or a reason's own threshold).",
            "svg": _quarantine_chart(oldest_first),
        },
        {
            "id": "chart-input",
            "caption": "Input records per run (log scale)",
            "note": None,
            "svg": charts.log_bars(
                "Input records per run",
                [_run_label(r) for r in oldest_first],
                [r.run_id for r in oldest_first],
                [r.records.get("input", 0) for r in oldest_first],
                "input records",
            ),
        },
    ]
    stages = _stage_chart(oldest_first)
    if stages is not None:
        figures.append(
            {
                "id": "chart-stages",
                "caption": "Time per run by stage",
                "note": "Spark batches: from each batch's start to its last commit, as the job's commits record "
                "them; table maintenance: as its step measured itself; the rest: planning, the lease, generation, "
                "the cluster, verification and the report.",
                "svg": stages,
            }
        )
    city_chart, city_note, date_chart, date_note = _gold_charts(oldest_first)
    figures.append(
        {"id": "chart-cities", "caption": "Gold rows by city (runs shown)", "note": city_note, "svg": city_chart}
    )
    figures.append(
        {"id": "chart-dates", "caption": "Gold rows by event date (runs shown)", "note": date_note, "svg": date_chart}
    )
    problems = [f"{run.run_id}: {problem}" for run in runs for problem in run.problems]
    return _render(
        "history.html",
        title,
        runs=runs,
        figures=figures,
        problems=problems,
        quality=quality_text,
        run_href=run_href or (lambda run_id: None),
    )


# ------------------------------------------------------------------ the run page
def _ratio(value: float) -> str:
    """A ratio as a percentage with no needless digits: `5 %`, `0.1 %`, `1.2345 %`."""
    return f"{value * 100:.4f}".rstrip("0").rstrip(".") + " %"


def dashboard_url(execution_arn: str) -> Optional[str]:
    """The stack's operations dashboard (`<stack>-operations`), from the execution's ARN: the state
    machine is named `<stack>-pipeline` (template.yaml)."""
    console = console_url(execution_arn)
    machine = execution_arn.split(":")[6] if console else ""
    if not console or not machine.endswith("-pipeline"):
        return None
    host = console.split("/states/")[0]
    region = execution_arn.split(":")[3]
    return f"{host}/cloudwatch/home?region={region}#dashboards/dashboard/{machine[: -len('-pipeline')]}-operations"


def render_run_page(
    report: RunReport,
    verification: dict | None = None,
    execution_arn: Optional[str] = None,
    history_href: Optional[str] = HISTORY_PAGE,
) -> str:
    """The page of one run. With an execution ARN of a deployed stack (not a local run), it links
    to the execution in the Step Functions console and to the stack's operations dashboard."""
    records = report.records
    total = records.get("input", 0)

    def share(count: int) -> str:
        return percent(count / total) if total else ""

    rows = [
        (name, int(records.get(key, 0)), share(int(records.get(key, 0))) if key != "input" else "")
        for name, key in (
            ("input", "input"),
            ("gold", "gold"),
            ("quarantined", "quarantined"),
            ("duplicates", "duplicates"),
        )
    ]
    outcome_bar = charts.share_bar(
        "Where the input went",
        [
            ("gold", records.get("gold", 0), charts.PALETTE[0]),
            ("quarantined", records.get("quarantined", 0), charts.PALETTE[1]),
            ("duplicates", records.get("duplicates", 0), charts.PALETTE[2]),
        ],
    )
    policy = report.quality_policy
    policy_rows = []
    if policy is not None:
        policy_rows = [
            ("max_quarantine_ratio", _ratio(policy.max_quarantine_ratio)),
            *(
                (f"max_quarantine_ratio_by_reason: {code}", _ratio(ratio))
                for code, ratio in sorted(policy.max_quarantine_ratio_by_reason.items())
            ),
            ("min_gold_rows", f"{policy.min_gold_rows:,}"),
            ("max_duplicate_ratio", _ratio(policy.max_duplicate_ratio)),
            ("on_breach", policy.on_breach),
        ]
    breaches = []
    for breach in report.quality_breaches:
        ratio = "ratio" in breach.rule
        breaches.append(
            {
                "rule": breach.rule,
                "figure": _ratio(breach.figure) if ratio else f"{breach.figure:,.0f}",
                "threshold": _ratio(breach.threshold) if ratio else f"{breach.threshold:,.0f}",
                "description": breach.description or format_breach(breach),
            }
        )
    by_reason_policy = policy.max_quarantine_ratio_by_reason if policy else {}
    reasons = [
        (
            code,
            count,
            share(count),
            _ratio(by_reason_policy[code]) if code in by_reason_policy else "",
            describe(code).replace("`", ""),
        )
        for code, count in sorted(report.quarantined_by_reason.items(), key=lambda item: (-item[1], item[0]))
    ]
    reconciliation = [
        (
            name.replace("_", " "),
            value
            if isinstance(value, str)
            else (", ".join(map(str, value)) or "none")
            if isinstance(value, list)
            else f"{value:,}"
            if isinstance(value, int) and not isinstance(value, bool)
            else ("yes" if value else "no")
            if isinstance(value, bool)
            else str(value),
        )
        for name, value in report.reconciliation.items()
    ]
    errors = []
    if report.error:
        errors.append(("error", error_line(report.error)))
    if report.step_error:
        errors.append(("Spark step", f"{report.step_error.get('verdict')}: {report.step_error.get('reason')}"))
    if report.ignored_objects.get("count"):
        ignored = report.ignored_objects
        reasons_text = ", ".join(f"{reason} {count:,}" for reason, count in ignored.get("by_reason", {}).items())
        errors.append(("Bronze objects not read", f"{ignored['count']:,} ({reasons_text})"))
    if report.spark_logs:
        errors.append(("Spark log", report.spark_logs))
    counts = (verification or {}).get("counts") or {}
    stages = stage_seconds(report, verification)
    timing = [
        ("started", report.started_at or "unknown"),
        ("finished", report.finished_at),
        ("duration", _duration(report.seconds) or "unknown"),
        *((f"of which {stage}", _duration(seconds)) for stage, seconds in stages.items()),
        ("Spark batches committed", f"{counts['batches']:,}" if "batches" in counts else "unknown"),
        ("Spark attempts", str(report.attempts)),
        ("drain rounds", str(report.drain_rounds)),
        ("trigger", report.trigger),
        ("run manifest", report.manifest),
    ]
    if report.reported_by:
        timing.append(("reported by", report.reported_by))
    judged = report.status in ("SUCCEEDED", "SUCCEEDED_WITH_STEP_ERROR") or bool(report.quality_breaches)
    window = [f"quarantined_at <= TIMESTAMP '{report.finished_at[:19].replace('T', ' ')}'"]
    if report.started_at:
        window.insert(0, f"quarantined_at >= TIMESTAMP '{report.started_at[:19].replace('T', ' ')}'")
    sample_query = f"SELECT reason, raw_line FROM quarantine WHERE {' AND '.join(window)} LIMIT 20"
    return _render(
        "run.html",
        f"iotpipe run {report.run_id}: {report.status}",
        report=report,
        summary=summary_line(report),
        execution_url=console_url(execution_arn) if execution_arn else None,
        dashboard_url=dashboard_url(execution_arn) if execution_arn else None,
        history_href=history_href,
        records=rows,
        outcome_bar=outcome_bar,
        breaches=breaches,
        judged=judged,
        policy=policy_rows,
        problem=reconciliation_problem(report.reconciliation) if report.reconciliation else "",
        reconciliation=reconciliation,
        reasons=reasons,
        errors=errors,
        timing=timing,
        sample_query=sample_query,
    )


# ------------------------------------------------------------------ where ReportStatus writes them
def run_page_uri(runs_uri: str, run_id: str) -> str:
    return join(runs_uri, f"{run_id}.html")


def history_page_uri(runs_uri: str) -> str:
    return join(runs_uri, HISTORY_PAGE)


def write_run_page(
    storage: Storage, runs_uri: str, report: RunReport, execution_arn: Optional[str], verification: dict | None = None
) -> str:
    """The run's page beside its manifest; links to AWS's consoles only for a deployed stack's
    lake (on S3): a local run's execution ARN is the local engine's. Returns its URI."""
    uri = run_page_uri(runs_uri, report.run_id)
    arn = execution_arn if is_s3(runs_uri) else None
    storage.write_bytes(uri, render_run_page(report, verification, arn).encode("utf-8"))
    return uri


def write_history_page(storage: Storage, runs_uri: str, last: int = DEFAULT_LAST_RUNS) -> str:
    """The page of the last `last` runs beside the manifests, each run linked to its page; returns
    its URI. Its cost is bounded by `last` (one listing, two reads per run), not by the lake's history."""
    uri = history_page_uri(runs_uri)
    page = render_history_page(read_history(storage, runs_uri, last), run_href=lambda run_id: f"{run_id}.html")
    storage.write_bytes(uri, page.encode("utf-8"))
    return uri


def relative_href(page_path: str, runs_folder: str, run_id: str) -> str:
    """The link from a page written at `page_path` to a run's page in the local `runs_folder`."""
    return posixpath.relpath(posixpath.join(runs_folder, f"{run_id}.html"), posixpath.dirname(page_path) or ".")
