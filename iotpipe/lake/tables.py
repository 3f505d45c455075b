"""The lake's tables, defined once: Gold, the quarantine, the seen-id store and the run history.

Gold, the quarantine and the seen-id store are Apache Iceberg tables (format version 2) in one
catalog: the Glue Data Catalog on AWS (the stack's database), Iceberg's JDBC catalog on a SQLite
file in the lake folder locally (`catalog/iceberg.db`). The Spark job creates them, idempotently,
from these definitions (`spark.tables`); Athena reads the Glue tables as they are, `iotpipe
query` reads the same snapshots locally (`iotpipe.query`). A test holds the job's columns and the
local views to this module.

The run history is written by ReportStatus as one line of JSON per run and table (`run_rows`),
beside the run manifests, because the manifest itself is a nested, pretty-printed document that
Athena's JSON SerDe (one object per line) cannot read; its Glue tables are in template.yaml.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from iotpipe.lake.storage import join

# The job's Spark catalog (spark.sql.catalog.<name>); locally also the JDBC catalog's name.
SPARK_CATALOG = "lake"
DATABASE = "iotpipe"
LOCAL_CATALOG_FILE = ("catalog", "iceberg.db")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Spark DDL type, which is Hive's / Glue's spelling too


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: Tuple[Column, ...]
    # Iceberg partition transforms, in Spark DDL (`date`, `day(quarantined_at)`); empty: unpartitioned.
    partitioning: Tuple[str, ...] = ()
    data_format: str = "iceberg"  # or "json": one JSON object per line (the run history)
    properties: Dict[str, str] = field(default_factory=dict)

    @property
    def all_columns(self) -> Tuple[Column, ...]:
        """Columns as a query sees them, in the table's order."""
        return self.columns

    @property
    def is_iceberg(self) -> bool:
        return self.data_format == "iceberg"


def _columns(*pairs: str) -> Tuple[Column, ...]:
    return tuple(Column(*pair.split(" ", 1)) for pair in pairs)


# Every Iceberg table: snappy Parquet; a bounded trail of metadata files; row-level changes
# (an analyst's DELETE in Spark) rewrite data files rather than add delete files, so every
# reader here, which reads data files, stays exact.
ICEBERG_PROPERTIES = {
    "format-version": "2",
    "write.format.default": "parquet",
    "write.parquet.compression-codec": "snappy",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "write.delete.mode": "copy-on-write",
    "write.update.mode": "copy-on-write",
    "write.merge.mode": "copy-on-write",
    # Each partition's rows go to one task (so a batch writes at most one file per partition),
    # sorted by partition within it: one file open at a time per task, as Spark's own file writer.
    "write.distribution-mode": "hash",
    "write.spark.fanout.enabled": "false",
}

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
        "date date",
        "location_city string",
    ),
    partitioning=("date", "location_city"),
    properties=ICEBERG_PROPERTIES,
)
QUARANTINE = Table(
    "quarantine",
    "Rejected records with their primary reason, every reason, the raw line, and when the pipeline took them",
    _columns(
        "reasons array<string>",
        "event_id string",
        "raw_line string",
        "raw_bytes binary",
        "source_file string",
        "reason string",
        "quarantined_at timestamp",
    ),
    partitioning=("reason", "day(quarantined_at)"),
    properties=ICEBERG_PROPERTIES,
)
# The de-duplication's memory (spark.dedup): the 128-bit key of every id a batch wrote to Gold,
# by the UTC day the batch ran. Internal: no analysis query reads it.
SEEN_IDS = Table(
    "seen_ids",
    "Internal to iotpipe: the key of every event_id written to Gold, by the day it was written",
    _columns("id_key_a bigint", "id_key_b bigint", "arrival_date date"),
    partitioning=("arrival_date",),
    properties={**ICEBERG_PROPERTIES, "write.distribution-mode": "none", "write.spark.fanout.enabled": "true"},
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
# What analysts query (Athena on AWS, `iotpipe query` locally), in this order.
TABLES: Tuple[Table, ...] = (GOLD, QUARANTINE, RUNS, RUN_QUARANTINE)
# What the Spark job writes, each commit tagged with its batch (spark.tables).
ICEBERG_TABLES: Tuple[Table, ...] = (GOLD, QUARANTINE, SEEN_IDS)

# Table maintenance (spark/maintain.py) merges a partition's small files into files of up to
# TARGET_FILE_BYTES once it holds MIN_INPUT_FILES of them. VerifyGold starts it once a table has
# COMMITS_BEFORE_MAINTENANCE commits that added files since its last maintenance
# (iotpipe.run.verify.maintenance_due).
TARGET_FILE_BYTES = 64 * 2**20
MIN_INPUT_FILES = 2
COMMITS_BEFORE_MAINTENANCE = 5
DEFAULT_SNAPSHOT_AGE_MS = 5 * 24 * 3600 * 1000

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "double": "DOUBLE",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "binary": "BLOB",
    "array<string>": "VARCHAR[]",
}


def duckdb_type(table: Table, column: Column) -> str:
    """A column's DuckDB type. Iceberg's `timestamp` from Spark is a timestamp with time zone;
    the run history's timestamps are plain text in UTC."""
    if column.type == "timestamp" and not table.is_iceberg:
        return "TIMESTAMP"
    return _DUCKDB_TYPES[column.type]


@dataclass(frozen=True)
class TableLocations:
    """Where each Iceberg table keeps its files (data and metadata), from the deployment's prefixes."""

    gold: str
    quarantine: str
    seen_ids: str

    def of(self, table: Table) -> str:
        return {GOLD.name: self.gold, QUARANTINE.name: self.quarantine, SEEN_IDS.name: self.seen_ids}[table.name]


def seen_ids_location(checkpoint_uri: str) -> str:
    """The seen-id store lives beside the query checkpoint it belongs to."""
    return join(checkpoint_uri, "seen-ids")


def local_catalog_uri(lake: str) -> str:
    """The local lake's Iceberg catalog: a SQLite file Spark's JDBC catalog writes and Python reads."""
    return "jdbc:sqlite:" + join(lake, *LOCAL_CATALOG_FILE)


def sqlite_path(catalog_uri: str) -> Optional[str]:
    """The SQLite file of a local catalog URI, None for the Glue Data Catalog."""
    return catalog_uri[len("jdbc:sqlite:") :] if catalog_uri.startswith("jdbc:sqlite:") else None


# ---------------------------------------------------------------- where the run rows live
def run_rows_uri(runs_uri: str, table: Table) -> str:
    """The prefix of one run table's rows: a folder of its own, since Athena reads every object
    under a table's location (verification documents sit under `runs/`)."""
    return join(runs_uri, "tables", table.name)


def _timestamp(iso: Optional[str]) -> Optional[str]:
    """ISO 8601 as Hive's timestamp text ('2024-05-01 12:00:00.000'), which Athena's JSON SerDe
    and DuckDB both read; always UTC, which is what the pipeline writes."""
    if not iso:
        return None
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="milliseconds")


def run_rows(report: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
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


def run_manifest_uri(runs_uri: str, run_id: str) -> str:
    """The run's manifest (its report), written by ReportStatus: a run without one has not reported."""
    return join(runs_uri, f"{run_id}.json")


def maintenance_outcome_uri(runs_uri: str, run_id: str) -> str:
    """What table maintenance did after the run (spark/maintain.py), for its report."""
    return join(runs_uri, run_id, "maintenance.json")
