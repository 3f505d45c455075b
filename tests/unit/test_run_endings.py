"""How a run ends, decided by the control plane without Spark: whether it has work at all, what it
does with the lease on every path out, and what a failed step left (complete, worth resuming, or
failed) read from the checkpoint and the tables' commits (tests/lakes.py makes them as the job
does). Each case is a defect a fault could provoke; the fault matrix
(tests/orchestration/test_fault_matrix.py) runs the same paths through the state machine."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.assess import assess_step_failure
from iotpipe.run.lease import acquire_for_run, release_for_run
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.plan import plan_run
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import arrival_time, decide
from tests.lakes import JobCommits


@pytest.fixture
def lake(tmp_path) -> Path:
    (tmp_path / "artifacts" / "spark").mkdir(parents=True)
    (tmp_path / "artifacts" / "spark" / "job.py").write_text("# the job\n")
    (tmp_path / "artifacts" / "spark" / "maintain.py").write_text("# the table maintenance\n")
    return tmp_path


def settings_for(lake: Path) -> Settings:
    return Settings.for_local_lake(str(lake), spark_job_uri=str(lake / "artifacts" / "spark" / "job.py"))


def checkpoint(lake: Path) -> Path:
    return lake / "artifacts" / "checkpoints" / "bronze-to-gold"


def log_batch(lake: Path, planned: int, committed: int | None) -> None:
    """The query's checkpoint alone: batches 0..planned planned, 0..committed committed."""
    for kind, last in (("offsets", planned), ("commits", committed)):
        folder = checkpoint(lake) / "transform" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for batch in range(0 if last is None else last + 1):
            (folder / str(batch)).write_text("v1\n{}\n")


def job_batches(lake: Path, planned: int, committed: int, run_id: str = "run-1") -> None:
    """What the job leaves: batches up to `committed` in every table and the checkpoint, the
    batches after it up to `planned` planned only (offsets, no commit anywhere)."""
    commits = JobCommits(settings_for(lake))
    done = commits.checkpoint / "commits"
    for batch in range(planned + 1):
        if batch <= committed and not (done / str(batch)).exists():
            commits.commit_batch(batch, run_id, gold={("2026-01-01", "Oslo"): 2}, quarantined={"malformed_json": 1})
        elif batch > committed:
            commits.commit_batch(batch, run_id, tables=(), query_commit=False)


def last_run_started(lake: Path, started: float) -> None:
    """The checkpoint's `last_run.json`, as the job writes it after a complete attempt."""
    finished = datetime.fromtimestamp(started + 30, timezone.utc).isoformat(timespec="seconds")
    checkpoint(lake).mkdir(parents=True, exist_ok=True)
    (checkpoint(lake) / "last_run.json").write_text(json.dumps({"finished_at": finished, "seconds": 30}))


def plan(lake: Path, execution_input: dict, name: str = "run-1"):
    return plan_run(execution_input, name, settings_for(lake), LocalStorage())


def leases(lake: Path) -> FileLeaseStore:
    return FileLeaseStore(settings_for(lake).lease_store)


# ---------------------------------------------------------------- empty work costs no cluster
NOW = time.time()
CLOCK_MARGIN_SECONDS = Settings.model_fields["arrival_clock_margin_seconds"].default


@pytest.mark.parametrize(
    ("started_by", "arrived", "batches", "work", "why"),
    [
        ("trigger", NOW - 3600, (3, 3), False, "older than the last complete run"),  # a redelivered event
        ("follow-up", NOW - 3600, (3, 3), False, "older than the last complete run"),  # a mark for data taken
        ("trigger", NOW - 600 - CLOCK_MARGIN_SECONDS / 2, (3, 3), True, "arrived after"),  # within the margin
        ("trigger", NOW, (3, 3), True, "arrived after"),
        ("trigger", NOW - 3600, (4, 3), True, "planned but not committed"),  # a crashed batch to replay
        ("trigger", None, (3, 3), True, "no arrival recorded"),
        ("console", NOW - 3600, (3, 3), True, "console"),  # a request, never skipped
    ],
    ids=lambda value: "time" if isinstance(value, float) else None,  # the same ids in every process
)
def test_a_run_has_work_unless_the_checkpoint_already_took_every_arrival(lake, started_by, arrived, batches, work, why):
    log_batch(lake, *batches)
    last_run_started(lake, NOW - 600)
    if arrived is not None:
        leases(lake).note_arrival("bronze-to-gold", arrived)
    run = plan(lake, {"generate": False, "started_by": started_by})
    decision = acquire_for_run(run, 0, leases(lake), LocalStorage())
    assert decision.acquired and decision.work is work and why in decision.work_reason


def test_a_lake_without_a_complete_run_always_has_work(lake):
    leases(lake).note_arrival("bronze-to-gold", NOW - 3600)
    decision = acquire_for_run(
        plan(lake, {"generate": False, "started_by": "trigger"}), 0, leases(lake), LocalStorage()
    )
    assert decision.work and decision.work_reason == "no complete run yet"


def test_the_trigger_records_the_objects_arrival_not_its_own_clock(lake):
    store = leases(lake)
    events = [{"time": "2026-01-01T00:00:00Z"}, {"time": "2026-01-01T00:05:00Z"}, {"time": "garbage"}]
    arrived = arrival_time(events, default=NOW)
    assert arrived == datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc).timestamp()
    decide(["raw/a.jsonl"], store, "bronze-to-gold", 60, now=NOW, arrived_at=arrived)
    assert store.get("bronze-to-gold").arrived_at == arrived
    assert arrival_time([{}], default=NOW) == NOW


# ---------------------------------------------------------------- every path out frees the lease
def holding(lake: Path, run, marked: bool) -> FileLeaseStore:
    store = leases(lake)
    assert store.acquire(run.lease.key, run.run_id, 600)
    if marked:
        store.mark_pending(run.lease.key)
    return store


@pytest.mark.parametrize("outcome", ["failed", "nothing-to-do"])
@pytest.mark.parametrize("marked", [False, True])
def test_a_run_that_will_not_drain_gives_the_lease_up_and_hands_marked_data_over(lake, outcome, marked):
    run = plan(lake, {"generate": False})
    store = holding(lake, run, marked)
    decision = release_for_run(run, 0, outcome, 2, settings_for(lake), LocalStorage(), store, run.attempt.run_id)
    assert store.get(run.lease.key).holder is None and decision.released == "released"
    assert decision.next == ("follow_up" if marked else "finish")


def test_when_drain_rounds_run_out_the_lease_is_free_for_the_follow_up(lake):
    run = plan(lake, {"generate": False, "max_drain_rounds": 0})
    store = holding(lake, run, marked=True)
    decision = release_for_run(run, 0, "succeeded", 2, settings_for(lake), LocalStorage(), store, None)
    assert decision.next == "follow_up" and store.get(run.lease.key).holder is None
    assert store.acquire(run.lease.key, run.follow_up_name, 60), "the follow-up takes the lease at once"


def test_a_drain_round_is_not_started_on_a_lease_another_run_took(lake):
    run = plan(lake, {"generate": False})
    store = leases(lake)
    store.acquire(run.lease.key, run.run_id, 600, now=NOW - 1000)  # expired long ago
    store.acquire(run.lease.key, "another-run", 600)
    decision = release_for_run(run, 0, "succeeded", 2, settings_for(lake), LocalStorage(), store, None)
    assert decision.next == "finish" and decision.released == "lost" and decision.next_attempt is None
    assert store.get(run.lease.key).holder == "another-run"


# ---------------------------------------------------------------- what a failed step left
def glue(lake: Path) -> LocalGlue:
    return LocalGlue(sqlite_path(settings_for(lake).catalog_uri))


def failed_attempt(lake: Path, before: tuple[int, int], after: tuple[int, int]):
    job_batches(lake, *before)
    run = plan(lake, {"generate": False, "max_resume_attempts": 3})
    job_batches(lake, *after)
    return assess_step_failure({"Error": "States.TaskFailed"}, run, run.attempt, settings_for(lake), LocalStorage(),
                               glue(lake))  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "verdict"),
    [
        ((4, 3), (4, 3), "failed"),  # a batch that cannot commit (poison): no attempt is spent on it again
        ((4, 3), (4, 4), "partial"),  # the replay committed: progress
        ((3, 3), (4, 3), "partial"),  # a new batch planned: progress
        ((3, 3), (3, 3), "failed"),  # nothing moved at all
    ],
)
def test_a_resume_is_spent_only_when_the_attempt_made_progress(lake, before, after, verdict):
    assessment = failed_attempt(lake, before, after)
    assert assessment.verdict == verdict and assessment.resume is (verdict == "partial")
    assert assessment.evidence["queries"]["transform"]["tables_holding_last_commit"] == dict.fromkeys(
        ("gold", "quarantine", "seen_ids"), True
    )


def test_a_step_that_failed_after_its_last_commit_is_complete(lake):
    """The attempt's summary is written (its query finished), nothing is planned and uncommitted,
    and every table holds the last committed batch: the step's FAILED is false."""
    run = plan(lake, {"generate": False})
    job_batches(lake, 2, 2)
    summary = checkpoint(lake) / "runs" / f"{run.attempt.run_id}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"finished_at": datetime.now(timezone.utc).isoformat(), "seconds": 30}))
    assessment = assess_step_failure({"Error": "States.TaskFailed"}, run, run.attempt, settings_for(lake),
                                     LocalStorage(), glue(lake))  # fmt: skip
    assert (assessment.verdict, assessment.resume) == ("complete", False)


@pytest.mark.parametrize("missing", ["gold", "quarantine", "seen_ids"])
def test_a_committed_batch_that_a_table_does_not_hold_is_inconsistent_evidence_and_not_resumed(lake, missing):
    """The query commits a batch only after every table's commit: a table without it means the
    evidence cannot be trusted (a table rolled back, a lake copied half), so nothing is resumed."""
    job_batches(lake, 1, 1)
    run = plan(lake, {"generate": False, "max_resume_attempts": 3})
    tables = tuple(t for t in ("gold", "quarantine", "seen_ids") if t != missing)
    JobCommits(settings_for(lake)).commit_batch(2, "run-1", gold={("2026-01-01", "Oslo"): 1}, tables=tables)
    assessment = assess_step_failure({"Error": "States.TaskFailed"}, run, run.attempt, settings_for(lake),
                                     LocalStorage(), glue(lake))  # fmt: skip
    assert (assessment.verdict, assessment.resume) == ("failed", False)
    assert "inconsistent evidence" in assessment.reason
    holding = assessment.evidence["queries"]["transform"]["tables_holding_last_commit"]
    assert [name for name, held in holding.items() if not held] == [missing]


def test_the_execution_fails_exactly_when_iotpipe_run_exits_non_zero():
    """On AWS the execution's own status is what alarms and callers see: a run that did not
    account for its records, or that its quality policy failed, must not end as Succeeded."""
    from typing import get_args

    from iotpipe.cli import RUN_ACCOUNTED_FOR
    from iotpipe.local.runner import DEFINITION
    from iotpipe.run.models import RunStatus

    outcome = json.loads(DEFINITION.read_text())["States"]["Outcome"]
    (choice,) = outcome["Choices"]
    failing = {rule["StringEquals"] for rule in choice["Or"]}
    assert choice["Next"] == "RunFailed" and outcome["Default"] == "RunSucceeded"
    # INTERRUPTED is only ever the report another run writes for a run that died (iotpipe.run.unreported):
    # no execution ends with it, so the Outcome need not name it, and `iotpipe run` never passes it.
    assert failing == set(get_args(RunStatus)) - set(RUN_ACCOUNTED_FOR) - {"INTERRUPTED"}
    assert "INTERRUPTED" not in RUN_ACCOUNTED_FOR


@pytest.mark.parametrize(("outcome", "expected"), [("failed", "follow_up"), ("succeeded", "drain")])
def test_a_retried_release_repeats_its_decision_instead_of_forgetting_the_waiting_data(lake, outcome, expected):
    """The first call cleared the mark (drain) or gave the lease up (hand-over), then its answer
    was lost; the retry must not decide again from the changed lease."""
    from iotpipe.run.lease import release_once

    run = plan(lake, {"generate": False})
    store = holding(lake, run, marked=True)

    def release():
        return release_once(run, 0, LocalStorage(), lambda: release_for_run(
            run, 0, outcome, 2, settings_for(lake), LocalStorage(), store, None))  # fmt: skip

    first, retried = release(), release()
    assert first.next == retried.next == expected and retried == first
