"""VerifyGold on real Iceberg commits (tests/lakes.py makes them as the Spark job does): a run is
verified over exactly its own batches (those whose last commit, the seen-id store's, names it),
from counts that come from different evidence (the job's tags on the Gold commit, the rows of the
data files each commit added, the seen-id store's commit), so that a lost file, a planted id or
a store out of step with Gold is a run that does not reconcile, never a SUCCEEDED one."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from iotpipe.cli import format_report, reconciles_line
from iotpipe.lake.iceberg import BATCH_ID, INPUT_ROWS, MAINTENANCE, QUERY_ID, Snapshot, TableMetadata, storage_uri
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import GOLD, QUARANTINE, SEEN_IDS, sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.models import RunReport, Verification
from iotpipe.run.plan import plan_run
from iotpipe.run.report import build_report, final_status, summary_line
from iotpipe.run.settings import Settings
from iotpipe.run.verify import maintenance_due, verify_gold
from tests.lakes import JobCommits

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)


class Lake:
    """A local lake whose tables the test commits to as the job would; VerifyGold reads it."""

    def __init__(self, root: Path) -> None:
        # Tiny batches with a large share quarantined: no quality rule applies here.
        permissive = {"quality_max_quarantine_ratio": 1.0, "quality_max_duplicate_ratio": 1.0}
        self.settings = Settings.for_local_lake(str(root), spark_job_uri=str(ROOT / "spark" / "job.py"), **permissive)
        self.commits = JobCommits(self.settings)
        self.storage = LocalStorage()
        self.glue = LocalGlue(sqlite_path(self.settings.catalog_uri))

    def verify(self, run_id: str) -> Verification:
        plan = plan_run({"generate": False}, run_id, self.settings, self.storage)
        return verify_gold(plan, self.storage, self.glue, self.settings.catalog_database)

    def report(self, run_id: str, verification: Verification) -> RunReport:
        plan = plan_run({"generate": False}, run_id, self.settings, self.storage)
        return build_report(plan, verification, None, None, 1, None, NOW)

    def data_files(self, table) -> dict[str, int]:
        """{storage path: rows} of the table's current data files, as PyIceberg plans them."""
        return {storage_uri(task.file.file_path): task.file.record_count
                for task in self.commits.table(table).scan().plan_files()}  # fmt: skip

    def planted_ids(self, count: int) -> int:
        """Ids appended to the seen-id store by a commit that is no batch's (no query or batch tag)."""
        store = self.commits.table(SEEN_IDS)
        columns = {"id_key_a": list(range(10_000, 10_000 + count)), "id_key_b": [0] * count,
                   "arrival_date": [datetime(2026, 1, 2).date()] * count}  # fmt: skip
        keys = pa.table(columns, schema=store.schema().as_arrow())
        store.append(keys)
        return store.current_snapshot().snapshot_id


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path)


OSLO, LYON = ("2026-01-01", "Oslo"), ("2026-01-02", "Lyon")


# ---------------------------------------------------------------- a normal run
def test_a_run_reconciles_from_the_counts_its_commits_recorded_and_the_rows_of_the_files_they_added(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3, LYON: 2}, quarantined={"malformed_json": 2, "missing_city": 1},
                              duplicates=1)  # fmt: skip
    lake.commits.commit_batch(1, "run-a", gold={OSLO: 4}, duplicates=2)
    verification = lake.verify("run-a")
    assert verification.ok and verification.problems == []
    assert verification.counts | {"batch_ms": 0} == {"batches": 2, "input_rows": 15, "quarantine_input_rows": 15,
                                                      "duplicates": 3, "batch_ms": 0}  # fmt: skip
    gold, quarantine = verification.gold, verification.quarantine
    assert (gold.batches, gold.first_batch, gold.last_batch) == (2, 0, 1)
    assert (gold.new_files, gold.new_rows, gold.committed_rows, gold.partitions) == (3, 9, 9, 2)
    assert (quarantine.new_files, quarantine.new_rows, quarantine.missing_files) == (2, 3, 0)
    assert verification.quarantined_by_reason == {"malformed_json": 2, "missing_city": 1}
    assert verification.reconciliation == {
        "reconciles": True, "input": 15, "accounted": 15, "difference": 0, "quarantine_input_difference": 0,
        "batches_not_reconciled": [], "seen_ids_inconsistent": [], "foreign_seen_id_commits": [],
        "commits_complete": True,
    }  # fmt: skip
    report = lake.report("run-a", verification)
    assert report.status == "SUCCEEDED" and report.records == {
        "input": 15,
        "gold": 9,
        "quarantined": 3,
        "duplicates": 3,
    }
    document = json.loads(Path(verification.document).read_text())
    assert [b["batch"] for b in document["batches"]] == [0, 1]
    assert document["gold"]["rows_by_partition"] == {"date=2026-01-01/location_city=Oslo": 7,
                                                     "date=2026-01-02/location_city=Lyon": 2}  # fmt: skip


def test_a_run_is_credited_with_its_own_batches_only(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3}, quarantined={"malformed_json": 1})
    lake.commits.commit_batch(1, "run-b", gold={OSLO: 5}, duplicates=1)
    lake.commits.commit_batch(2, "run-c", gold={LYON: 7})
    verified = {run: lake.verify(run) for run in ("run-a", "run-b", "run-c", "run-never")}
    assert [(v.gold.first_batch, v.gold.new_rows, v.counts["input_rows"]) for v in verified.values()] == [
        (0, 3, 4), (1, 5, 6), (2, 7, 7), (None, 0, 0)]  # fmt: skip
    assert all(v.reconciliation["reconciles"] for v in verified.values())


def test_both_tables_commits_must_name_the_same_input(lake):
    """The quarantine's commit of a batch says its input too: a batch whose two commits disagree
    took different data into each table, and is not reconciled whatever the totals."""
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3}, quarantined={"malformed_json": 2}, tables=("gold",),
                              query_commit=False)  # fmt: skip
    rows = lake.commits.quarantine_rows({"malformed_json": 2}, 0)
    lake.commits.table(QUARANTINE).append(rows, snapshot_properties={QUERY_ID: lake.commits.query_id, BATCH_ID: "0",
                                                                     INPUT_ROWS: "9"})  # fmt: skip
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3}, quarantined={"malformed_json": 2}, tables=("seen_ids",))
    reconciliation = lake.verify("run-a").reconciliation
    assert reconciliation["difference"] == 0 and reconciliation["quarantine_input_difference"] == -4
    assert reconciliation["batches_not_reconciled"] == [0] and reconciliation["reconciles"] is False


# ---------------------------------------------------------------- a file lost after its commit
def test_a_gold_file_lost_after_its_commit_leaves_the_run_unreconciled_naming_the_file(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3, LYON: 2}, quarantined={"malformed_json": 1})
    lost = next(path for path, rows in lake.data_files(GOLD).items() if rows == 2)
    Path(lost).unlink()
    verification = lake.verify("run-a")
    assert verification.ok, "every commit is there: the run's data is what is missing"
    assert (verification.gold.missing_files, verification.gold.examples) == (1, {"missing": [lost]})
    assert (verification.gold.new_rows, verification.gold.committed_rows) == (3, 5)
    assert verification.reconciliation["difference"] == 2 and not verification.reconciliation["reconciles"]
    assert final_status(None, None, verification) == "UNRECONCILED"
    report = lake.report("run-a", verification)
    assert report.status == "UNRECONCILED" and "(unaccounted 2)" in summary_line(report)


def test_a_file_whose_size_is_not_the_committed_one_is_not_counted(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3})
    (changed,) = lake.data_files(GOLD)
    Path(changed).write_bytes(Path(changed).read_bytes() + b"\0")
    verification = lake.verify("run-a")
    assert verification.gold.size_mismatches == 1 and verification.gold.examples == {"size_mismatch": [changed]}
    assert verification.gold.new_rows == 0 and final_status(None, None, verification) == "UNRECONCILED"


# ---------------------------------------------------------------- the seen-id store
def test_ids_planted_in_the_seen_id_store_between_the_runs_batches_leave_it_unreconciled(lake):
    """An id in the store that no Gold commit wrote makes a new record with that id pass for a
    duplicate: the counts still add up, the verification does not."""
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3})
    planted = lake.planted_ids(4)
    lake.commits.commit_batch(1, "run-a", gold={LYON: 2}, duplicates=1)
    verification = lake.verify("run-a")
    reconciliation = verification.reconciliation
    assert reconciliation["foreign_seen_id_commits"] == [planted]
    assert reconciliation["difference"] == 0 and reconciliation["reconciles"] is False
    assert final_status(None, None, verification) == "UNRECONCILED"
    document = json.loads(Path(verification.document).read_text())
    assert [c["snapshot"] for c in document["foreign_seen_id_commits"]] == [planted]


def test_ids_planted_between_two_runs_are_charged_to_the_run_after_them_only(lake):
    """Ids planted after run A's last batch cannot have touched A's records, only later ones: the
    commit is in the next run's report, and in no other (A's report, written late for a run that
    died, included)."""
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3})
    planted = lake.planted_ids(1)
    lake.commits.commit_batch(1, "run-b", gold={LYON: 2})
    lake.commits.commit_batch(2, "run-c", gold={LYON: 1})
    found = {run: lake.verify(run).reconciliation["foreign_seen_id_commits"] for run in ("run-a", "run-b", "run-c")}
    assert found == {"run-a": [], "run-b": [planted], "run-c": []}


def test_a_seen_id_commit_that_disagrees_with_golds_is_an_inconsistent_store(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3})
    lake.commits.commit_batch(1, "run-a", gold={OSLO: 5}, seen_ids_added=2)
    reconciliation = lake.verify("run-a").reconciliation
    assert reconciliation["seen_ids_inconsistent"] == [1] and reconciliation["difference"] == 0
    assert reconciliation["reconciles"] is False


# ---------------------------------------------------------------- whose batch it is
def test_a_batch_belongs_to_the_run_that_made_its_seen_id_commit(lake):
    """Run A committed batch 1 to Gold and the quarantine and died; run B's replay found both
    commits and made the last one, the seen-id store's: batch 1 is B's, reported once, by B."""
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3})
    lake.commits.commit_batch(1, "run-a", gold={LYON: 4}, quarantined={"missing_city": 1}, duplicates=1,
                              tables=("gold", "quarantine"), query_commit=False)  # fmt: skip
    lake.commits.commit_batch(1, "run-b", gold={LYON: 4}, tables=("seen_ids",))
    lake.commits.commit_batch(2, "run-b", gold={OSLO: 2})
    a, b = lake.verify("run-a"), lake.verify("run-b")
    assert (a.gold.first_batch, a.gold.last_batch, a.counts["input_rows"]) == (0, 0, 3)
    assert (b.gold.first_batch, b.gold.last_batch, b.counts["input_rows"]) == (1, 2, 8)
    assert (b.gold.new_rows, b.quarantine.new_rows, b.counts["duplicates"]) == (6, 1, 1)
    assert a.reconciliation["reconciles"] and b.reconciliation["reconciles"]


def test_a_batch_whose_seen_id_commit_has_no_gold_commit_fails_the_verification(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3})
    lake.commits.commit_batch(1, "run-a", gold={OSLO: 1}, tables=("seen_ids",))
    verification = lake.verify("run-a")
    assert not verification.ok and verification.problems == ["batch 1: gold, quarantine"]
    assert verification.reconciliation["commits_complete"] is False
    assert lake.report("run-a", verification).status == "FAILED"


# ---------------------------------------------------------------- what `iotpipe run` prints
def test_iotpipe_run_prints_the_reports_own_verdict_even_when_the_shown_numbers_add_up(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3}, quarantined={"malformed_json": 1}, duplicates=1)
    planted = lake.planted_ids(2)
    lake.commits.commit_batch(1, "run-a", gold={LYON: 1})
    report = lake.report("run-a", lake.verify("run-a")).model_dump()
    records = report["records"]
    assert records["input"] == records["gold"] + records["quarantined"] + records["duplicates"] == 6
    shown = [line for line in format_report(report).splitlines() if line.startswith("reconciles")]
    assert shown == [f"reconciles               NO: ids added to the seen-id store by commits [{planted}]"]


def test_iotpipe_run_says_yes_only_for_a_reconciled_report(lake):
    lake.commits.commit_batch(0, "run-a", gold={OSLO: 3}, quarantined={"malformed_json": 1}, duplicates=1)
    report = lake.report("run-a", lake.verify("run-a")).model_dump()
    assert reconciles_line(report) == "yes"
    unreconciled = {**report, "reconciliation": {**report["reconciliation"], "reconciles": False}}
    assert reconciles_line(unreconciled) == "NO: not reconciled"


def _table(snapshots: list[tuple[int, int, dict]], current: int | None = None) -> TableMetadata:
    """Table metadata with a main line of (id, timestamp ms, summary), oldest first."""
    made, parent = {}, None
    for snapshot_id, timestamp_ms, summary in snapshots:
        made[snapshot_id] = Snapshot(snapshot_id, parent, timestamp_ms, summary.get("operation", "append"), summary, "")
        parent = snapshot_id
    return TableMetadata("lake/t", current if current is not None else parent, made)


def test_maintenance_is_due_from_the_tables_own_history_only():
    day = 24 * 3600 * 1000
    now = 100 * day
    adds = {"added-data-files": "20"}
    nothing = {"added-data-files": "0"}
    four = [(i, now - i, adds) for i in range(1, 5)]
    assert maintenance_due({"gold": _table(four)}, 5, now)["due"] is False
    assert maintenance_due({"gold": _table(four)}, 4, now) == {
        "due": True, "reason": "gold: 4 commits added files since its last maintenance"}  # fmt: skip
    # Commits that added nothing do not count; a maintenance commit starts the count again.
    assert maintenance_due({"gold": _table([*four, (9, now, nothing)])}, 5, now)["due"] is False
    merged = [(10, now - 20, adds), (11, now - 19, adds), (12, now - 18, {MAINTENANCE: "run-1", **adds}), *four]
    assert maintenance_due({"gold": _table(merged)}, 5, now)["due"] is False
    assert maintenance_due({"gold": _table([(20, now - 30, adds), *merged])}, 5, now)["due"] is False
    # Any table may make it due; an old snapshot to expire does too, but never the current one.
    assert maintenance_due({"gold": _table(four), "quarantine": _table([*four, (5, now, adds)])}, 5, now)["due"]
    old = [(1, now - 6 * day, adds), (2, now, adds)]
    assert maintenance_due({"gold": _table(old)}, 5, now)["reason"] == "gold: 1 snapshots older than 120 h to expire"
    assert maintenance_due({"gold": _table(old[:1])}, 5, now)["due"] is False
    assert maintenance_due(None, 5, now) == {"due": False, "reason": "the tables hold no commits yet"}
