"""A local lake with a history of real Iceberg commits, behind a stand-in for S3 that counts requests.

`HistoryLake(root, history, run)` commits `history` batches by three earlier runs, each reported
as its ReportStatus reports (`verify_gold`, `build_report`, `write_manifest`, `record_run`, then
`report_dead_runs`), and then `run` batches by the run under test, "run-1", all as the Spark job
commits them (tests/lakes.py: Gold, the quarantine and the seen-id store, tagged, and the query's
checkpoint). Cities have a space, a quote and a non-ASCII letter.

`CountingStorage` serves the lake's files to the code under test and counts every request by the
function making it and its kind (HEAD, GET, PUT, LIST, DELETE); it refuses to list any prefix
under a table's location (such a listing grows with the table's history: that is the mistake the
scale test exists to catch), and keeps the Avro files read (manifest lists and manifests) and the
metadata files read, so a test can check they are the run's own. `CountingGlue` counts GetTable.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from iotpipe.lake.iceberg import BATCH_ID, storage_uri
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import GOLD, QUARANTINE, SEEN_IDS, seen_ids_location, sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.history import record_run
from iotpipe.run.models import RunPlan
from iotpipe.run.plan import plan_run
from iotpipe.run.report import build_report, write_manifest
from iotpipe.run.settings import Settings
from iotpipe.run.unreported import report_dead_runs
from iotpipe.run.verify import verify_gold
from tests.lakes import JobCommits

ROOT = Path(__file__).resolve().parents[2]
EXECUTIONS = "arn:aws:states:us-east-1:123456789012:execution:iotpipe-pipeline"
RUN = "run-1"
OLDER_RUNS = ("run-old-a", "run-old-b", "run-old-c")
CITIES = ("St. John's", "Zürich", "Oslo")
ROWS = 3  # Gold rows per city and batch; a batch also quarantines one row and drops one duplicate
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)


class EndedExecutions:
    """Step Functions as ReportStatus asks it: every execution but the run's own has ended."""

    class exceptions:  # noqa: N801 - boto3's shape
        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self) -> None:
        self.described: list[str] = []

    def describe_execution(self, executionArn: str) -> dict:  # noqa: N803 - boto3's shape
        self.described.append(executionArn)
        return {"status": "RUNNING" if executionArn.endswith(f":{RUN}") else "SUCCEEDED"}


class CountingStorage:
    """The Storage protocol over the local lake, counting requests as S3 would bill them."""

    def __init__(self, table_locations: list[str]) -> None:
        self.inner = LocalStorage()
        self.tables = [location.rstrip("/") + "/" for location in table_locations]
        self.function = "setup"
        self.requests: Counter = Counter()
        self.avro_read: list[str] = []
        self.metadata_read: list[str] = []

    @contextlib.contextmanager
    def acting_as(self, function: str):
        self.function = function
        try:
            yield
        finally:
            self.function = "setup"

    def _count(self, kind: str, uri: str = "") -> None:
        self.requests[(self.function, kind)] += 1
        if kind == "GET" and uri.endswith(".avro"):
            self.avro_read.append(uri)
        elif kind == "GET" and uri.endswith(".metadata.json"):
            self.metadata_read.append(uri)

    def _listing(self, prefix_uri: str) -> None:
        under = [t for t in self.tables if (prefix_uri.rstrip("/") + "/").startswith(t)]
        assert not under, f"listed {prefix_uri}, under the table at {under[0]}: it grows with the table's history"
        self._count("LIST")

    def list(self, prefix_uri: str):
        self._listing(prefix_uri)
        return self.inner.list(prefix_uri)

    def list_first(self, prefix_uri: str, limit: int):
        self._listing(prefix_uri)
        return self.inner.list_first(prefix_uri, limit)

    def exists(self, uri: str) -> bool:
        self._listing(uri)  # S3Storage.exists lists with the key as prefix
        return self.inner.exists(uri)

    def stat(self, uri: str):
        self._count("HEAD")
        return self.inner.stat(uri)

    def read_bytes(self, uri: str) -> bytes:
        self._count("GET", uri)
        return self.inner.read_bytes(uri)

    def read_tail(self, uri: str, length: int) -> bytes:
        self._count("GET", uri)
        return self.inner.read_tail(uri, length)

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._count("PUT")
        self.inner.write_bytes(uri, data)

    def delete(self, uri: str) -> None:
        self._count("DELETE")
        self.inner.delete(uri)

    def move(self, source_uri: str, target_uri: str) -> None:
        self._count("COPY")
        self._count("DELETE")
        self.inner.move(source_uri, target_uri)

    def open_writer(self, uri: str):
        self._count("PUT")
        return self.inner.open_writer(uri)


class CountingGlue:
    """The catalog's GetTable, counted against the function making it."""

    def __init__(self, inner: LocalGlue, storage: CountingStorage) -> None:
        self.inner, self.storage, self.exceptions = inner, storage, inner.exceptions

    def get_table(self, **params) -> dict:
        self.storage._count("GetTable")
        return self.inner.get_table(**params)


def gold_rows(cities: int = len(CITIES), day: str = "2026-01-01") -> dict[tuple[str, str], int]:
    names = [CITIES[i] if i < len(CITIES) else f"City {i} ü" for i in range(cities)]
    return {(day, city): ROWS for city in names}


class HistoryLake:
    def __init__(self, root: Path, history: int, run: int, cities: int = len(CITIES)) -> None:
        self.settings = Settings.for_local_lake(
            str(root), spark_job_uri=str(ROOT / "spark" / "job.py"), lease_store=str(root / "leases"),
            quality_max_quarantine_ratio=1.0, quality_max_duplicate_ratio=1.0,
        )  # fmt: skip
        self.history, self.run = history, run
        self.storage = CountingStorage(
            [self.settings.gold_uri, self.settings.quarantine_uri, seen_ids_location(self.settings.checkpoint_uri)]
        )
        self.glue = CountingGlue(LocalGlue(sqlite_path(self.settings.catalog_uri)), self.storage)
        self.commits = JobCommits(self.settings)
        self.sfn = EndedExecutions()
        for batch in range(history):
            run_id = OLDER_RUNS[batch * len(OLDER_RUNS) // history]
            self._commit(batch, run_id)
            last_of_run = batch == history - 1 or OLDER_RUNS[(batch + 1) * len(OLDER_RUNS) // history] != run_id
            if last_of_run:
                self._report(run_id)
        self.plan = self.plan_of(RUN)  # PlanRun, before the run's batches
        for batch in range(history, history + run):
            self._commit(batch, RUN, cities)

    def _commit(self, batch: int, run_id: str, cities: int = len(CITIES)) -> None:
        self.commits.commit_batch(batch, run_id, gold=gold_rows(cities), quarantined={"malformed_json": 1},
                                  duplicates=1, execution=f"{EXECUTIONS}:{run_id}")  # fmt: skip

    def plan_of(self, run_id: str) -> RunPlan:
        return plan_run({"generate": False}, run_id, self.settings, self.storage.inner,
                        execution_id=f"{EXECUTIONS}:{run_id}")  # fmt: skip

    def _report(self, run_id: str) -> None:
        """What the run's VerifyGold and ReportStatus write (its manifest, its history entry), and
        the dead-run search ReportStatus makes afterwards, which moves the all-reported marker."""
        plan, storage = self.plan_of(run_id), self.storage.inner
        verification = verify_gold(plan, storage, self.glue.inner, self.settings.catalog_database)
        report = build_report(plan, verification, None, None, 1, (NOW - timedelta(minutes=5)).isoformat(), NOW)
        write_manifest(report, verification, storage)
        record_run(storage, plan.lake.runs, report)
        report_dead_runs(plan, storage, self.glue.inner, self.settings.catalog_database, self.sfn, NOW)

    def run_batches(self) -> range:
        return range(self.history, self.history + self.run)

    def runs_own_avro_files(self) -> set[str]:
        """The manifest lists of the run's commits and the manifests those commits wrote, in every
        table, as PyIceberg (an independent reader) finds them."""
        own = set()
        for table in (GOLD, QUARANTINE, SEEN_IDS):
            iceberg = self.commits.table(table)
            for snapshot in iceberg.snapshots():
                if int(snapshot.summary.get(BATCH_ID, -1)) not in self.run_batches():
                    continue
                own.add(storage_uri(snapshot.manifest_list))
                own.update(storage_uri(m.manifest_path) for m in snapshot.manifests(iceberg.io)
                           if m.added_snapshot_id == snapshot.snapshot_id)  # fmt: skip
        return own

    def current_metadata_files(self) -> set[str]:
        return {storage_uri(self.commits.table(t).metadata_location) for t in (GOLD, QUARANTINE, SEEN_IDS)}

    def data_files(self, table) -> list[str]:
        return [storage_uri(task.file.file_path) for task in self.commits.table(table).scan().plan_files()]
