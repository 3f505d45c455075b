"""Table maintenance: Iceberg's own actions on Gold, the quarantine and the seen-id store.

Run with spark-submit after a run's VerifyGold, while the run holds the lease (locally as the
state machine's MaintainTables step, on EMR as a step):

    spark-submit spark/maintain.py --gold URI --quarantine URI --checkpoint URI --runs URI \
        --catalog glue|jdbc:sqlite:FILE --catalog-database NAME --run-id ID

For each table, in this order, each one commit at most (a crash anywhere leaves every table as
it was or as it is after that commit; no reader ever sees a row twice or misses one):

- **rewrite data files** (bin-packing): in each partition, the files under 48 MiB are merged
  into files of up to 64 MiB once there are two of them (VerifyGold starts this step only once
  a table has had five commits since its last maintenance). A partition a run did not write is
  not touched, so the work follows what the run added; a file that has grown past 48 MiB is left
  alone, so a busy partition is not rewritten whole run after run;
- **rewrite manifests**, once a table has more than MANIFESTS_TO_REWRITE of them;
- **expire snapshots** older than the table's `history.expire.max-snapshot-age-ms` (Iceberg's
  default, 5 days: time travel that far back), keeping the snapshots of every run that has not
  reported yet (its report is made from them) and skipping expiry while the query has a batch
  planned and not committed (its replay looks its commits up);
- **remove orphan files** (files no snapshot references: a commit that crashed half way) older
  than ORPHAN_AGE, at most once a day per table: it lists the whole table.

Every commit is tagged `iotpipe.maintenance=<run id>`. The outcome is written to
`<runs>/<run id>/maintenance.json` for the run report. Python 3.9 syntax; ends by returning from main.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Dict, Optional

from pyspark.sql import SparkSession

from iotpipe.lake.checkpoint import query_checkpoint, read_checkpoint
from iotpipe.lake.storage import join, storage_for
from iotpipe.lake.tables import (
    DATABASE,
    DEFAULT_SNAPSHOT_AGE_MS,
    GOLD,
    ICEBERG_TABLES,
    MIN_INPUT_FILES,
    SEEN_IDS,
    TARGET_FILE_BYTES,
    Table,
    maintenance_outcome_uri,
    run_manifest_uri,
)
from iotpipe.lake.tags import MAINTENANCE, RUN_ID
from spark.heartbeat import LeaseLost
from spark.job import CRASH_ARMED_PROPERTY, CRASHING_FILE_IO, session, start_heartbeat
from spark.tables import IcebergTable, configure_catalog, warehouse_of

MANIFESTS_TO_REWRITE = 100
ORPHAN_AGE_MS = 3 * 24 * 3600 * 1000
ORPHAN_INTERVAL_MS = 24 * 3600 * 1000
ORPHANS_REMOVED = "maintenance-orphans.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Iceberg table maintenance after a run")
    parser.add_argument("--gold", required=True, help="the Gold table's location (for the catalog's warehouse)")
    parser.add_argument("--checkpoint", required=True, help="the streaming job's checkpoint root")
    parser.add_argument("--runs", required=True, help="where run manifests are: the outcome is written there too")
    parser.add_argument("--catalog", default="glue", help="'glue' or 'jdbc:sqlite:<file>'")
    parser.add_argument("--catalog-database", default=DATABASE)
    parser.add_argument("--run-id", required=True, help="the run this maintenance follows")
    parser.add_argument("--region", default=None, help="AWS region of the job's own S3 calls on EMR")
    parser.add_argument("--lease", default=None, help="the checkpoint lease's store (as the streaming job's)")
    parser.add_argument("--lease-key", default="bronze-to-gold")
    parser.add_argument("--lease-holder", default=None, help="the run holding the lease")
    parser.add_argument("--lease-seconds", type=float, default=300.0)
    parser.add_argument(
        "--fault", default=None, choices=("crash-inside-maintenance",),
        help="tests only: halt the driver inside the commit of Gold's rewrite",
    )  # fmt: skip
    return parser


class Maintenance:
    def __init__(self, spark: SparkSession, args: argparse.Namespace, storage, heartbeat) -> None:
        self.spark, self.args, self.storage, self.heartbeat = spark, args, storage, heartbeat
        self.actions = spark.sparkContext._jvm.org.apache.iceberg.spark.actions.SparkActions.get(spark._jsparkSession)
        self.now_ms = int(time.time() * 1000)

    def _check_lease(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise LeaseLost(f"stopped maintenance: {self.heartbeat.lost_reason}")

    def table(self, table: Table, expire: bool, keep_from_ms: int, orphans_due: bool) -> dict:
        started = time.time()
        java = IcebergTable(self.spark, self.args.catalog_database, table).java()
        before = _totals(java)
        outcome: Dict[str, object] = {"files_before": before["files"], "bytes_before": before["bytes"]}
        self._check_lease()
        if self.args.fault == "crash-inside-maintenance" and table.name == GOLD.name:
            jvm = self.spark.sparkContext._jvm
            jvm.java.lang.System.setProperty(CRASH_ARMED_PROPERTY, java.location().rstrip("/"))
        rewrite = (
            self.actions.rewriteDataFiles(java)
            .option("min-input-files", str(MIN_INPUT_FILES))
            .option("target-file-size-bytes", str(TARGET_FILE_BYTES))
            .option("partial-progress.enabled", "false")
            .snapshotProperty(MAINTENANCE, self.args.run_id)
            .execute()
        )
        outcome["files_rewritten"] = rewrite.rewrittenDataFilesCount()
        outcome["files_written"] = rewrite.addedDataFilesCount()
        java.refresh()
        if (
            java.currentSnapshot() is not None
            and len(java.currentSnapshot().allManifests(java.io())) > MANIFESTS_TO_REWRITE
        ):
            self._check_lease()
            self.actions.rewriteManifests(java).snapshotProperty(MAINTENANCE, self.args.run_id).execute()
            outcome["manifests_rewritten"] = True
        oldest_snapshot_ms = min((snapshot.timestampMillis() for snapshot in java.snapshots()), default=self.now_ms)
        max_age = int(java.properties().get("history.expire.max-snapshot-age-ms") or DEFAULT_SNAPSHOT_AGE_MS)
        older_than = min(self.now_ms - max_age, keep_from_ms)
        if expire and oldest_snapshot_ms < older_than:  # a Spark job only when a snapshot is old enough
            self._check_lease()
            expired = self.actions.expireSnapshots(java).expireOlderThan(older_than).retainLast(1).execute()
            outcome["data_files_deleted_by_expiry"] = expired.deletedDataFilesCount()
        # A file can be an orphan older than ORPHAN_AGE only in a table that old.
        if orphans_due and oldest_snapshot_ms < self.now_ms - ORPHAN_AGE_MS:
            self._check_lease()
            orphans = self.actions.deleteOrphanFiles(java).olderThan(self.now_ms - ORPHAN_AGE_MS).execute()
            outcome["orphan_files_removed"] = sum(1 for _ in orphans.orphanFileLocations())
        java.refresh()
        after = _totals(java)
        outcome.update(files_after=after["files"], bytes_after=after["bytes"], seconds=round(time.time() - started, 3))
        return outcome

    def keep_unreported_from(self) -> int:
        """The oldest commit expiry must keep: the first seen-id commit of a run with no report yet
        (a later run reports it from its commits). Only commits old enough to expire are checked:
        the runs of about one maintenance interval."""
        seen = IcebergTable(self.spark, self.args.catalog_database, SEEN_IDS).java()
        keep_from = self.now_ms
        oldest_expirable = self.now_ms - DEFAULT_SNAPSHOT_AGE_MS
        reported: Dict[str, bool] = {}
        for snapshot in seen.snapshots():
            run = snapshot.summary().get(RUN_ID)
            if run is None or snapshot.timestampMillis() >= max(oldest_expirable, keep_from):
                continue
            if run not in reported:
                reported[run] = self.storage.stat(run_manifest_uri(self.args.runs, run)) is not None
            if not reported[run]:
                keep_from = min(keep_from, snapshot.timestampMillis())
        return keep_from

    def orphans_due(self) -> Dict[str, bool]:
        uri = join(self.args.checkpoint, ORPHANS_REMOVED)
        last = json.loads(self.storage.read_bytes(uri)) if self.storage.stat(uri) is not None else {}
        return {t.name: self.now_ms - int(last.get(t.name, 0)) >= ORPHAN_INTERVAL_MS for t in ICEBERG_TABLES}

    def note_orphans_removed(self, tables: list) -> None:
        uri = join(self.args.checkpoint, ORPHANS_REMOVED)
        last = json.loads(self.storage.read_bytes(uri)) if self.storage.stat(uri) is not None else {}
        last.update({name: self.now_ms for name in tables})
        self.storage.write_bytes(uri, json.dumps(last, sort_keys=True).encode())


def _totals(java) -> dict:
    summary = java.currentSnapshot().summary() if java.currentSnapshot() is not None else {}
    return {"files": int(summary.get("total-data-files") or 0), "bytes": int(summary.get("total-files-size") or 0)}


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    started = time.time()
    configure_catalog(spark, args.catalog, warehouse_of(args.gold), CRASHING_FILE_IO if args.fault else None)
    # A driver name of its own: a claim fences (and waits out) any other driver, even this run's.
    heartbeat = start_heartbeat(args, f"{args.run_id}-maintenance-{uuid.uuid4().hex[:8]}", on_lost=lambda reason: None)
    storage = storage_for(args.checkpoint, region=args.region)
    outcome: Dict[str, object] = {"run_id": args.run_id, "tables": {}}
    try:
        state = read_checkpoint(storage, query_checkpoint(args.checkpoint))
        maintenance = Maintenance(spark, args, storage, heartbeat)
        expire = not state.has_uncommitted_batch
        if not expire:
            outcome["expiry_skipped"] = (
                f"batch {state.last_planned} is planned and not committed: its replay needs the commits"
            )
        keep_from = maintenance.keep_unreported_from() if expire else 0
        due = maintenance.orphans_due()
        for table in ICEBERG_TABLES:
            outcome["tables"][table.name] = maintenance.table(table, expire, keep_from, due[table.name])
        maintenance.note_orphans_removed([n for n, t in outcome["tables"].items() if "orphan_files_removed" in t])
    finally:
        if heartbeat:
            heartbeat.stop()
            heartbeat.end_claim()
    outcome["seconds"] = round(time.time() - started, 3)
    outcome["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    storage.write_bytes(maintenance_outcome_uri(args.runs, args.run_id), json.dumps(outcome, sort_keys=True).encode())
    return outcome


def main(argv: Optional[list] = None) -> dict:
    args = build_parser().parse_args(argv)
    spark = session("iotpipe-table-maintenance")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    outcome = run(spark, args)
    print("IOTPIPE_MAINTENANCE " + json.dumps(outcome, sort_keys=True), flush=True)
    return outcome


if __name__ == "__main__":
    main()
