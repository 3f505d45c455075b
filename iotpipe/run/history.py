"""The run history: the last runs' manifests and verification documents, newest first.

ReportStatus files each run in a history index, `<runs>/_history/<inverted time>-<run_id>.json`,
whose keys sort newest first, so the last N runs are one bounded listing (S3 lists keys in
ascending order, at most 1000 per request) however long the lake's history is. Each entry points
at the run's manifest (`<runs>/<run_id>.json`, `iotpipe.run.report.write_manifest`), which points
at its verification document (`<runs>/<run_id>/verification.json`, Gold rows per partition).

A run's summary carries the report's own verdicts (status, reconciliation, quality breaches and
the policy's threshold), never figures worked out again here, and the time of the stages the
pipeline records: the Spark job's batches (their commits' timings, in the verification), table
maintenance (its own seconds) and the rest of the run.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import Optional
from urllib.parse import unquote

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from iotpipe.lake.storage import Storage, join
from iotpipe.run.models import RunReport
from iotpipe.run.quality import JUDGED
from iotpipe.run.report import reconciliation_problem

HISTORY_FOLDER = "_history"
DEFAULT_LAST_RUNS = 30
MAX_LAST_RUNS = 1000  # one ListObjectsV2 request
# Keys hold (CEILING - finished time in ms), 13 digits: newest first until the year 2286.
_CEILING_MS = 10**13
_ENTRY_NAME = re.compile(r"^\d{13}-.+\.json$")
_MISSING_CODES = ("NoSuchKey", "404", "NotFound")


class RunSummary(BaseModel):
    """One run as the report shows it: the manifest's figures and verdicts, and the Gold rows by date and city."""

    run_id: str
    status: str
    trigger: str
    started_at: Optional[str] = None
    finished_at: str
    seconds: Optional[float] = None
    records: dict[str, int]
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)
    attempts: int
    gold_rows_by_date_city: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="date -> city -> Gold rows the run committed"
    )
    stage_seconds: dict[str, float] = Field(
        default_factory=dict, description="seconds per stage the pipeline records (STAGES), when the run has them"
    )
    reconciles: Optional[bool] = Field(None, description="the report's verdict; None: the run verified nothing")
    reconciliation_problem: Optional[str] = Field(None, description="what did not add up, in the report's words")
    quality_judged: bool = Field(False, description="whether the policy was applied (runs that would have succeeded)")
    quality_breaches: list[dict] = Field(default_factory=list, description="rule, figure, threshold, description")
    max_quarantine_ratio: Optional[float] = Field(None, description="the policy's threshold the run was held to")
    error: Optional[str] = Field(None, description="the run's error, on one line")
    manifest: Optional[str] = None
    problems: list[str] = Field(default_factory=list, description="parts of the run's documents that could not be read")

    @property
    def quarantine_ratio(self) -> Optional[float]:
        """Quarantined / input records, None for a run without input."""
        total = self.records.get("input", 0)
        return self.records.get("quarantined", 0) / total if total else None


# The stages whose time the pipeline records, in the order they run within a run.
SPARK_STAGE, MAINTENANCE_STAGE, REST_STAGE = "Spark batches", "table maintenance", "rest of the run"
STAGES = (SPARK_STAGE, MAINTENANCE_STAGE, REST_STAGE)


def stage_seconds(report: RunReport, verification: dict | None) -> dict[str, float]:
    """Seconds of the Spark job's batches (from each batch's start to its last commit, as the
    verification adds them up), of table maintenance (as its step measured it), and the rest of
    the run's seconds; empty when the run's length is unknown (a run that died before its report)."""
    if report.seconds is None:
        return {}
    spark = int(((verification or {}).get("counts") or {}).get("batch_ms") or 0) / 1000
    maintenance = float((report.maintenance or {}).get("seconds") or 0)
    rest = max(0.0, report.seconds - spark - maintenance)
    return {SPARK_STAGE: round(spark, 3), MAINTENANCE_STAGE: round(maintenance, 3), REST_STAGE: round(rest, 3)}


def error_line(error: dict | None) -> str:
    """`Error: message` of a failed execution, on one line and whole (a refusal ends with what
    to do); a Lambda's cause (JSON with a stack trace) gives only its message."""
    error = error or {}
    cause = error.get("Cause") or ""
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{error.get('Error') or 'error'}: {' '.join(str(cause).split())}"


def history_entry_uri(runs_uri: str, finished_at: str, run_id: str) -> str:
    finished = datetime.fromisoformat(finished_at.replace("Z", "+00:00"))
    inverted = _CEILING_MS - int(finished.timestamp() * 1000)
    return join(runs_uri, HISTORY_FOLDER, f"{inverted:013d}-{run_id}.json")


def record_run(storage: Storage, runs_uri: str, report: RunReport) -> str:
    """File the run's manifest in the history index; return the entry's URI."""
    uri = history_entry_uri(runs_uri, report.finished_at, report.run_id)
    storage.write_bytes(uri, json.dumps({"run_id": report.run_id, "manifest": report.manifest}).encode())
    return uri


def gold_by_date_city(rows_by_partition: dict[str, int]) -> dict[str, dict[str, int]]:
    """`date=D/location_city=C` partitions as {D: {C: rows}}: the values percent-escaped as VerifyGold
    writes them (iotpipe.run.verify), or as Spark named the folders in older documents."""
    found: dict[str, dict[str, int]] = {}
    for partition, rows in rows_by_partition.items():
        values = dict(part.split("=", 1) for part in partition.split("/") if "=" in part)
        date, city = unquote(values.get("date", "?")), unquote(values.get("location_city", "?"))
        found.setdefault(date, {})
        found[date][city] = found[date].get(city, 0) + int(rows)
    return {date: dict(sorted(cities.items())) for date, cities in sorted(found.items())}


def _read_json(storage: Storage, uri: str) -> dict | None:
    """The document at `uri`, or None if there is none (a run that failed before writing it)."""
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
            return None
        raise


def summarise_run(storage: Storage, manifest_uri: str) -> RunSummary | None:
    """The run of one manifest, with its Gold partitions from the verification document."""
    manifest = _read_json(storage, manifest_uri)
    if manifest is None:
        return None
    report = RunReport.model_validate(manifest["report"])
    verification = manifest.get("verification") or {}
    summary = RunSummary(
        run_id=report.run_id,
        status=report.status,
        trigger=report.trigger,
        started_at=report.started_at,
        finished_at=report.finished_at,
        seconds=report.seconds,
        records={k: int(v) for k, v in report.records.items()},
        quarantined_by_reason=report.quarantined_by_reason,
        attempts=report.attempts,
        stage_seconds=stage_seconds(report, verification),
        reconciles=report.reconciliation.get("reconciles") if report.reconciliation else None,
        reconciliation_problem=None
        if not report.reconciliation or report.reconciliation.get("reconciles")
        else reconciliation_problem(report.reconciliation),
        quality_judged=bool(report.quality_breaches) or (report.status in JUDGED and report.quality_policy is not None),
        quality_breaches=[breach.model_dump() for breach in report.quality_breaches],
        max_quarantine_ratio=report.quality_policy.max_quarantine_ratio if report.quality_policy else None,
        error=error_line(report.error) if report.error else None,
        manifest=manifest_uri,
    )
    document_uri = (manifest.get("verification") or {}).get("document")
    if document_uri:
        document = _read_json(storage, document_uri)
        if document is None:
            summary.problems.append(f"verification document missing: {document_uri}")
        else:
            summary.gold_rows_by_date_city = gold_by_date_city(document.get("gold", {}).get("rows_by_partition", {}))
    return summary


def read_history(storage: Storage, runs_uri: str, last: int = DEFAULT_LAST_RUNS) -> list[RunSummary]:
    """The last `last` runs, newest first: one bounded listing, then two reads per run."""
    if not 1 <= last <= MAX_LAST_RUNS:
        raise ValueError(f"the number of runs must be between 1 and {MAX_LAST_RUNS}, got {last}")
    runs = []
    for info in storage.list_first(join(runs_uri, HISTORY_FOLDER) + "/", last):
        if not _ENTRY_NAME.match(info.uri.rsplit("/", 1)[-1]):
            continue
        entry = _read_json(storage, info.uri)
        summary = summarise_run(storage, entry["manifest"]) if entry else None
        if summary is not None:
            runs.append(summary)
    return runs


def read_run(storage: Storage, runs_uri: str, run_id: str) -> tuple[RunReport, dict | None] | None:
    """One run's report and verification totals, from its manifest; None if it has not reported."""
    manifest = _read_json(storage, join(runs_uri, f"{run_id}.json"))
    if manifest is None:
        return None
    return RunReport.model_validate(manifest["report"]), manifest.get("verification")


def percent(share: Optional[float]) -> str:
    """`1.41 %`; a share below 0.01 % that is not zero shows as `<0.01 %`."""
    if share is None:
        return ""
    if 0 < share < 0.0001:
        return "<0.01 %"
    return f"{share * 100:.2f} %"


def quality_text(run: RunSummary) -> str:
    """`ok`, the rules broken, or `-` for a run the policy was not applied to (it failed, deferred...)."""
    if run.quality_breaches:
        return ", ".join(breach["rule"] for breach in run.quality_breaches)
    return "ok" if run.quality_judged else "-"


TABLE_COLUMNS = ("run", "status", "trigger", "started", "seconds", "input", "gold", "quarantined", "quarantined %",
                 "duplicates", "quality", "attempts")  # fmt: skip
_NUMERIC = {"seconds", "input", "gold", "quarantined", "quarantined %", "duplicates", "attempts"}


def table_rows(runs: list[RunSummary]) -> list[tuple[str, ...]]:
    rows = []
    for run in runs:
        r = run.records
        rows.append(
            (
                run.run_id,
                run.status,
                run.trigger,
                (run.started_at or "")[:19].replace("T", " "),
                "" if run.seconds is None else f"{run.seconds:,.1f}",
                f"{r.get('input', 0):,}",
                f"{r.get('gold', 0):,}",
                f"{r.get('quarantined', 0):,}",
                percent(run.quarantine_ratio),
                f"{r.get('duplicates', 0):,}",
                quality_text(run),
                str(run.attempts),
            )
        )
    return rows


def format_table(runs: list[RunSummary]) -> str:
    """The history as a plain-text table, newest run first."""
    import tabulate as tabulate_module
    from tabulate import tabulate

    tabulate_module.MIN_PADDING = 0  # columns as wide as their widest cell or header, no wider
    if not runs:
        return "no runs recorded yet"
    align = ["right" if name in _NUMERIC else "left" for name in TABLE_COLUMNS]
    return tabulate(table_rows(runs), headers=TABLE_COLUMNS, tablefmt="simple", colalign=align, disable_numparse=True)
