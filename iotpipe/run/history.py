"""The run history: the last runs' manifests and verification documents, newest first.

ReportStatus files each run in a history index, `<runs>/_history/<inverted time>-<run_id>.json`,
whose keys sort newest first, so the last N runs are one bounded listing (S3 lists keys in
ascending order, at most 1000 per request) however long the lake's history is. Each entry points
at the run's manifest (`<runs>/<run_id>.json`, `iotpipe.run.report.write_manifest`), which points
at its verification document (`<runs>/<run_id>/verification.json`, Gold rows per partition).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Optional
from urllib.parse import unquote

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from iotpipe.lake.storage import Storage, join
from iotpipe.run.models import RunReport

HISTORY_FOLDER = "_history"
DEFAULT_LAST_RUNS = 30
MAX_LAST_RUNS = 1000  # one ListObjectsV2 request
# Keys hold (CEILING - finished time in ms), 13 digits: newest first until the year 2286.
_CEILING_MS = 10**13
_ENTRY_NAME = re.compile(r"^\d{13}-.+\.json$")
_MISSING_CODES = ("NoSuchKey", "404", "NotFound")


class RunSummary(BaseModel):
    """One run as the report shows it: the manifest's figures and the Gold rows by date and city."""

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
    stage_seconds: dict[str, float] = Field(default_factory=dict, description="seconds per pipeline stage, if known")
    problems: list[str] = Field(default_factory=list, description="parts of the run's documents that could not be read")


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
        stage_seconds=dict(getattr(report, "stage_seconds", None) or {}),
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


TABLE_COLUMNS = ("run", "status", "trigger", "started", "seconds", "input", "gold", "quarantined", "duplicates",
                 "attempts")  # fmt: skip
_NUMERIC = {"seconds", "input", "gold", "quarantined", "duplicates", "attempts"}


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
                f"{r.get('duplicates', 0):,}",
                str(run.attempts),
            )
        )
    return rows


def format_table(runs: list[RunSummary]) -> str:
    """The history as a plain-text table, newest run first."""
    if not runs:
        return "no runs recorded yet"
    rows = [TABLE_COLUMNS, *table_rows(runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if name in _NUMERIC else cell.ljust(width)
            for cell, width, name in zip(row, widths, TABLE_COLUMNS)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *(line(row) for row in rows[1:])])
