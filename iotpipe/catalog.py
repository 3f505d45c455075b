"""The analysis tables, defined once: Gold, the quarantine and the run history.

The Glue tables of template.yaml (read by Athena) and the DuckDB views of `iotpipe query` are
both checked against this definition by a test, so the two cannot drift. Types are Hive's, as
Glue spells them; `duckdb_type` maps them for the local views.

Gold and the quarantine are the Spark job's Parquet sinks (columns as `spark.transforms.to_gold`
and `to_quarantine` write them, the partition columns last, as Spark's partitioned writer puts
them). The run history is written by ReportStatus as one line of JSON per run and table
(`run_rows`), beside the run manifests, because the manifest itself is a nested, pretty-printed
document that Athena's JSON SerDe (one object per line) cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iotpipe.storage import join

DATABASE = "iotpipe"
# Spark (like Hive) writes a null partition value as this directory name.
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# Spark's ExternalCatalogUtils.charToEscape on a POSIX file system (Windows adds ' ', '<', '>', '|'):
# each is written as %XX (upper-case hex) in a partition directory name.
ESCAPED_IN_PATHS = frozenset([chr(c) for c in range(0x01, 0x20)] + list("\"#%'*/:=?\\\x7f{[]^"))


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Hive / Glue type


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    partition_keys: tuple[Column, ...] = ()
    data_format: str = "parquet"  # or "json": one JSON object per line
    # Read through symlink manifests (iotpipe.manifests): Athena sees committed files only.
    reads_manifests: bool = False

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Columns as a query sees them: the data columns, then the partition keys."""
        return self.columns + self.partition_keys


def _columns(*pairs: str) -> tuple[Column, ...]:
    return tuple(Column(*pair.split(" ", 1)) for pair in pairs)


GOLD = Table(
    "gold",
    "Valid readings, one row per event_id, partitioned by UTC date and city",
    _columns(
        "event_id string",
        "device_id string",
        "event_time timestamp",
        "temperature_c double",
        "humidity_pct double",
        "battery_pct int",
        "firmware string",
        "location_country string",
        "location_lat double",
        "location_lon double",
        "source_file string",
    ),
    _columns("date date", "location_city string"),
    reads_manifests=True,
)
QUARANTINE = Table(
    "quarantine",
    "Rejected records with their primary reason (the partition), every reason and the raw line",
    _columns("reasons array<string>", "event_id string", "raw_line string", "raw_bytes binary", "source_file string"),
    _columns("reason string"),
    reads_manifests=True,
)
RUNS = Table(
    "runs",
    "One row per pipeline run: status, record counts and timings (from the run manifest)",
    _columns(
        "run_id string",
        "status string",
        "trigger string",
        "started_at timestamp",
        "finished_at timestamp",
        "seconds double",
        "attempts int",
        "drain_rounds int",
        "input_records bigint",
        "gold_records bigint",
        "quarantined_records bigint",
        "duplicate_records bigint",
        "gold_partitions int",
        "ignored_objects bigint",
        "reconciles boolean",
        "error string",
        "manifest string",
    ),
    data_format="json",
)
RUN_QUARANTINE = Table(
    "run_quarantine",
    "One row per run and quarantine reason: records the run quarantined for it",
    _columns("run_id string", "finished_at timestamp", "reason string", "records bigint"),
    data_format="json",
)
TABLES: tuple[Table, ...] = (GOLD, QUARANTINE, RUNS, RUN_QUARANTINE)

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
# How Athena reads a table whose locations hold manifests (lists of Parquet files), not data.
SYMLINK_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE},
}

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "double": "DOUBLE",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "binary": "BLOB",
    "array<string>": "VARCHAR[]",
}


def duckdb_type(hive_type: str) -> str:
    return _DUCKDB_TYPES[hive_type]


# ---------------------------------------------------------------- where the run rows live
def run_rows_uri(runs_uri: str, table: Table) -> str:
    """The prefix of one run table's rows: a folder of its own, since Athena reads every object
    under a table's location (the manifests and verification documents sit under `runs/`)."""
    return join(runs_uri, "tables", table.name)


def _timestamp(iso: str | None) -> str | None:
    """ISO 8601 as Hive's timestamp text ('2024-05-01 12:00:00.000'), which Athena's JSON SerDe
    and DuckDB both read; always UTC, which is what the pipeline writes."""
    if not iso:
        return None
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="milliseconds")


def run_rows(report: dict) -> dict[str, list[dict[str, Any]]]:
    """The run report (`RunReport.model_dump()`) as flat rows of RUNS and RUN_QUARANTINE."""
    records = report.get("records") or {}
    error = report.get("error") or {}
    finished = _timestamp(report.get("finished_at"))
    run = {
        "run_id": report["run_id"],
        "status": report["status"],
        "trigger": report.get("trigger"),
        "started_at": _timestamp(report.get("started_at")),
        "finished_at": finished,
        "seconds": report.get("seconds"),
        "attempts": report.get("attempts"),
        "drain_rounds": report.get("drain_rounds", 0),
        "input_records": records.get("input", 0),
        "gold_records": records.get("gold", 0),
        "quarantined_records": records.get("quarantined", 0),
        "duplicate_records": records.get("duplicates", 0),
        "gold_partitions": report.get("gold_partitions", 0),
        "ignored_objects": (report.get("ignored_objects") or {}).get("count", 0),
        "reconciles": (report.get("reconciliation") or {}).get("reconciles"),
        "error": error.get("Error") if isinstance(error, dict) else None,
        "manifest": report.get("manifest"),
    }
    reasons = [
        {"run_id": report["run_id"], "finished_at": finished, "reason": reason, "records": count}
        for reason, count in sorted((report.get("quarantined_by_reason") or {}).items())
    ]
    return {RUNS.name: [run], RUN_QUARANTINE.name: reasons}


# ---------------------------------------------------------------- partition directory names
def escape_path_name(value: str) -> str:
    """A partition value as Spark writes it in a directory name (ExternalCatalogUtils.escapePathName)."""
    return "".join(f"%{ord(c):02X}" if c in ESCAPED_IN_PATHS else c for c in value)


def unescape_path_name(name: str) -> str:
    """The partition value of a directory name (ExternalCatalogUtils.unescapePathName): `%XX` is
    the character XX; a `%` not followed by two hex digits is itself."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "%" and _is_hex(name[i + 1 : i + 3]):
            out.append(chr(int(name[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def partition_values(table: Table, relative_dir: str) -> list[str | None]:
    """The values of a partition directory (`date=2024-05-01/location_city=St. John%27s`), in the
    order of the table's partition keys; None for Hive's default (null) partition."""
    parts = relative_dir.strip("/").split("/") if relative_dir.strip("/") else []
    names = [key.name for key in table.partition_keys]
    found = [part.split("=", 1) for part in parts]
    if [pair[0] for pair in found] != names or any(len(pair) != 2 for pair in found):
        raise ValueError(f"{relative_dir!r} is not a partition directory of {table.name} ({'/'.join(names)})")
    return [None if raw == HIVE_DEFAULT_PARTITION else unescape_path_name(raw) for _, raw in found]
