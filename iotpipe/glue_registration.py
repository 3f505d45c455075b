"""ReportStatus's part of the catalog: register the partitions a run committed, write its run rows.

Partitions come from the run's verification document (`rows_by_partition` per sink, written by
VerifyGold from the sink logs), so only partitions holding a committed file are ever registered:
no crawler, no `MSCK REPAIR TABLE`, no listing of the bucket. Each partition is registered with
its explicit location, the folder of its manifests (named after the directory Spark wrote, its
value escaped as Hive escapes it; VerifyGold wrote them, iotpipe.manifests), and the unescaped
value, so both are exact whatever characters a city has (see docs/design.md).
Registration is idempotent: a partition already registered (an earlier run wrote to the same
date and city) comes back as AlreadyExistsException, which is the outcome wanted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from iotpipe import catalog
from iotpipe.catalog import GOLD, QUARANTINE, RUN_QUARANTINE, RUNS, Table
from iotpipe.compaction import publish_pending, spark_summary
from iotpipe.manifests import manifest_folder
from iotpipe.models import Lake, RunReport
from iotpipe.storage import Storage, join

# BatchCreatePartition takes at most 100 PartitionInputs per call (the API's PartitionInputList).
MAX_PARTITIONS_PER_CALL = 100
ALREADY_EXISTS = "AlreadyExistsException"
SINKS = {"gold": GOLD, "quarantine": QUARANTINE}
MAX_ERRORS = 5
NO_COMPACTION_STEP = "no compaction step: the run has no new batches, or one without its ledger entry"


@dataclass
class Registration:
    """What the registration did, per table: bounded, for the report and the logs."""

    registered: dict[str, int] = field(default_factory=dict)
    already_registered: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def add_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def summary(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "already_registered": self.already_registered,
            "errors": self.error_count,
            "error_examples": self.errors,
        }


def committed_partitions(document: dict, sink: str) -> list[str]:
    """Relative directories (`date=.../location_city=...`) holding a file the sink committed in the run."""
    rows = (document.get(sink) or {}).get("rows_by_partition") or {}
    return sorted(partition for partition, count in rows.items() if partition and count > 0)


def partition_input(table: Table, table_uri: str, relative_dir: str) -> dict:
    """A PartitionInput: the values as Glue keeps them, the location the folder of the partition's
    manifests, read as the table is (a sink table reads manifests)."""
    values = [catalog.HIVE_DEFAULT_PARTITION if v is None else v for v in catalog.partition_values(table, relative_dir)]
    storage = {"Location": manifest_folder(table_uri, relative_dir) + "/", **catalog.SYMLINK_STORAGE}
    # Athena (Trino) reads a partition with its own descriptor: its format and its columns.
    storage["Columns"] = [{"Name": column.name, "Type": column.type} for column in table.columns]
    return {"Values": values, "StorageDescriptor": storage}


def register_partitions(glue, database: str, table: Table, inputs: list[dict], outcome: Registration) -> None:
    """BatchCreatePartition in calls of at most 100, counting already registered partitions as done."""
    for start in range(0, len(inputs), MAX_PARTITIONS_PER_CALL):
        chunk = inputs[start : start + MAX_PARTITIONS_PER_CALL]
        response = glue.batch_create_partition(DatabaseName=database, TableName=table.name, PartitionInputList=chunk)
        errors = response.get("Errors") or []
        existing = [e for e in errors if e.get("ErrorDetail", {}).get("ErrorCode") == ALREADY_EXISTS]
        for error in errors:
            if error not in existing:
                detail = error.get("ErrorDetail", {})
                code, message = detail.get("ErrorCode"), detail.get("ErrorMessage")
                outcome.add_error(f"{table.name} {error.get('PartitionValues')}: {code} {message}")
        outcome.registered[table.name] = outcome.registered.get(table.name, 0) + len(chunk) - len(errors)
        outcome.already_registered[table.name] = outcome.already_registered.get(table.name, 0) + len(existing)


def register_run(
    glue, database: str, storage: Storage, verification_document: str | None, sinks: dict[str, str]
) -> Registration:
    """Register every partition the run committed to each sink (`sinks`: sink name -> table URI)."""
    outcome = Registration()
    if not verification_document:
        return outcome
    document = json.loads(storage.read_bytes(verification_document))
    for sink, table in SINKS.items():
        inputs = [partition_input(table, sinks[sink], p) for p in committed_partitions(document, sink)]
        if inputs:
            register_partitions(glue, database, table, inputs, outcome)
    return outcome


def write_run_rows(storage: Storage, runs_uri: str, report: dict) -> list[str]:
    """The run's rows of RUNS and RUN_QUARANTINE, one JSON object per line, one file per run and
    table (`<runs>/tables/<table>/<run_id>.json`): rewritten whole if the run reports again."""
    written = []
    for table in (RUNS, RUN_QUARANTINE):
        rows = catalog.run_rows(report)[table.name]
        uri = join(catalog.run_rows_uri(runs_uri, table), f"{report['run_id']}.json")
        if rows:
            storage.write_bytes(uri, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())
            written.append(uri)
    return written


def catalog_run(
    glue_client: Callable[[], Any], database: str, storage: Storage, lake: Lake, report: RunReport, document: str | None
) -> dict:
    """ReportStatus's one call: the run's rows, then its partitions. A catalog failure does not
    fail the run's report (its data is committed and counted either way): it is returned, so the
    report, the logs and a metric show it, and registering again is safe."""
    write_run_rows(storage, lake.runs, report.model_dump())
    if not database:
        return {"database": None, "errors": 0}
    try:
        sinks = {"gold": lake.gold, "quarantine": lake.quarantine}
        outcome = register_run(glue_client(), database, storage, document, sinks)
    except Exception as error:  # noqa: BLE001 - any failure of Glue or of reading the document
        outcome = Registration()
        outcome.add_error(f"{type(error).__name__}: {error}")
    return {"database": database, **outcome.summary()}


ENTITY_NOT_FOUND = "EntityNotFoundException"


def relocate_partitions(glue, database: str, table: Table, table_uri: str, moves: dict[str, str]) -> int:
    """Point each partition (`relative dir -> manifest folder`) at its new folder: one
    BatchUpdatePartition per 100, each partition's move atomic for Athena. A partition not
    registered yet (its run's ReportStatus comes later) is registered there; registering it
    again later finds it and leaves it. The count moved."""
    entries = []
    for relative_dir, folder in sorted(moves.items()):
        partition = partition_input(table, table_uri, relative_dir)
        partition["StorageDescriptor"]["Location"] = folder
        entries.append({"PartitionValueList": partition["Values"], "PartitionInput": partition})
    for start in range(0, len(entries), MAX_PARTITIONS_PER_CALL):
        chunk = entries[start : start + MAX_PARTITIONS_PER_CALL]
        response = glue.batch_update_partition(DatabaseName=database, TableName=table.name, Entries=chunk)
        failed = {tuple(e["PartitionValueList"]): e["ErrorDetail"] for e in response.get("Errors") or []}
        unknown = [
            e for e in chunk if failed.get(tuple(e["PartitionValueList"]), {}).get("ErrorCode") == ENTITY_NOT_FOUND
        ]
        other = [detail for detail in failed.values() if detail.get("ErrorCode") != ENTITY_NOT_FOUND]
        if other:
            raise RuntimeError(f"moving {table.name} partitions failed: {other[:3]}")
        if unknown:
            outcome = Registration()
            register_partitions(glue, database, table, [e["PartitionInput"] for e in unknown], outcome)
            if outcome.error_count or outcome.already_registered.get(table.name):
                # Registered meanwhile at its usual folder (ReportStatus of an earlier run): move it.
                for entry in unknown:
                    glue.update_partition(DatabaseName=database, TableName=table.name, **entry)
    return len(entries)


def publish_compactions(
    storage: Storage,
    plan,
    database: str,
    glue_client: Callable[[], Any],
    step_error=None,
    compacted: bool = True,
    no_driver_writes: Callable[[], bool] = lambda: True,
) -> dict:
    """PublishCompaction's one call: publish what the compaction's Spark step swapped in (and
    what an earlier one left), then report both sides. Without a catalog database only the
    manifests and VerifyGold's pointers move (Athena is not set up). Nothing moves unless
    `no_driver_writes` proves that no driver (a compaction step EMR reported FAILED while it
    still runs, say) holds the lease: the next run publishes instead. A verified run that runs no
    compaction step (`compacted` false) still finishes what earlier ones began."""
    spark = spark_summary(storage, plan.lake.checkpoint, plan.run_id) if compacted else {"skipped": NO_COMPACTION_STEP}
    report = {"spark": spark, "step_failed": bool(step_error), "step_error": (step_error or {}).get("Error")}
    if not no_driver_writes():
        return {**report, "published": [], "cleaned": [], "deleted": 0, "waiting": ["a driver may still run"]}

    def relocate(moves: dict[str, str]) -> None:
        if database:
            relocate_partitions(glue_client(), database, GOLD, plan.lake.gold, moves)

    outcome = publish_pending(storage, plan.lake.gold, relocate)
    published = {"published": outcome.resumed, "cleaned": outcome.cleaned, "deleted": outcome.deleted}
    due = {str(batch): _utc(at) for batch, at in sorted(outcome.deletions_due.items())}
    return {**report, **published, "waiting": outcome.waiting, "deletions_due": due}


def _utc(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
