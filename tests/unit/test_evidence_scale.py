"""VerifyGold, ReleaseLease and AssessStepFailure do work that grows with the run, not with the
lake's history, and every payload they return stays far under Step Functions' 256 KiB limit.

The lake is a stand-in for S3 that synthesises a long history on demand and counts requests
(tests/unit/history_lake.py); it refuses to list a prefix that grows with the history.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import datetime, timezone

import pytest

from iotpipe.assessment import assess_step_failure
from iotpipe.lease import FileLeaseStore
from iotpipe.leasing import release_for_run
from iotpipe.local.limits import function_limits
from iotpipe.manifests import MANIFEST_FOLDER
from iotpipe.planning import plan_run
from iotpipe.reporting import build_report
from iotpipe.settings import Settings
from iotpipe.verification import verify_gold
from tests.unit.history_lake import FILES_PER_BATCH, GOLD, LAKE, PARQUET, QUARANTINE, ROWS_PER_FILE, HistoryLake

STATE_LIMIT = 256 * 1024
RUN_BATCHES = 3


JOB = f"{LAKE}/artifacts/spark/job.py"


def settings_for(tmp_path) -> Settings:
    # The synthetic lake quarantines one file's rows per batch (a 1-in-11 share): no quality policy here.
    return Settings.for_local_lake(
        LAKE, lease_store=str(tmp_path / "leases"), spark_job_uri=JOB, quality_max_quarantine_ratio=1.0
    )


def control_plane(lake: HistoryLake, settings: Settings) -> dict:
    """One run's evidence work: VerifyGold, AssessStepFailure (a false FAILED) and ReleaseLease."""
    plan = plan_run({"generate": False}, "run-1", settings, lake)
    committed_before = {query: lake.before(query) for query in ("gold", "quarantine")}
    started = datetime.fromtimestamp(lake.batch_time(lake.before("gold") + 1), timezone.utc)
    lake.summaries[plan.attempt.run_id] = {"finished_at": started.isoformat(), "seconds": 0}
    leases = FileLeaseStore(settings.lease_store)
    leases.acquire(plan.lease.key, plan.run_id, 600)
    leases.mark_pending(plan.lease.key, now=started.timestamp() - 60)  # our own uploads, before the step
    lake.requests.clear()
    peaks: dict[str, int] = {}

    def traced(function: str, call):
        """The call's result; its peak of traced memory (while tracing is on) goes to `peaks`."""
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        result = call()
        if tracemalloc.is_tracing():
            peaks[function] = tracemalloc.get_traced_memory()[1] - before
        return result

    return {
        "verification": traced("verify_gold", lambda: verify_gold(plan, committed_before, lake, may_move=lambda: True)),
        "assessment": traced(
            "assess_step_failure",
            lambda: assess_step_failure({"Error": "States.TaskFailed"}, plan, plan.attempt, settings, lake),
        ),  # fmt: skip
        "release": traced(
            "release_lease",
            lambda: release_for_run(plan, 0, "succeeded", 2, settings, lake, leases, plan.attempt.run_id),
        ),  # fmt: skip
        "plan": plan,
        "peaks": peaks,
    }


def measured(lake: HistoryLake, settings: Settings) -> tuple[dict, float, int]:
    tracemalloc.start()
    began = time.perf_counter()
    results = control_plane(lake, settings)
    seconds = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return results, seconds, peak


def test_the_evidence_work_of_a_run_does_not_grow_with_the_lakes_history(tmp_path):
    short = HistoryLake(history=200, run=RUN_BATCHES)
    long = HistoryLake(history=50_000, run=RUN_BATCHES)  # 500,000 Gold files
    (short_results, short_seconds, short_peak) = measured(short, settings_for(tmp_path / "short"))
    (long_results, long_seconds, long_peak) = measured(long, settings_for(tmp_path / "long"))

    assert dict(long.requests) == dict(short.requests)
    assert long_seconds < max(3 * short_seconds, 0.5), (short_seconds, long_seconds)
    assert long_peak < 1.5 * short_peak + 256 * 1024, (short_peak, long_peak)
    memory = function_limits()
    # Each within a quarter of its template MemorySize: traced memory leaves out the interpreter.
    for function, peak in long_results["peaks"].items():
        assert peak < memory[function].memory_mb * 2**20 / 4, (function, peak, memory[function])
    verification = long_results["verification"]
    assert verification.ok and verification.gold.batches == RUN_BATCHES
    assert verification.gold.new_files == RUN_BATCHES * FILES_PER_BATCH
    assert verification.gold.new_rows == RUN_BATCHES * FILES_PER_BATCH * ROWS_PER_FILE
    assert verification.quarantine.new_rows == RUN_BATCHES * ROWS_PER_FILE
    assert long_results["assessment"].verdict == "complete"
    assert long_results["release"].next == "finish" and long_results["release"].released == "released"
    print(
        f"\nevidence work, history of 200 vs 50,000 batches: requests {dict(long.requests)}, "
        f"seconds {short_seconds:.3f} vs {long_seconds:.3f}, peak KiB {short_peak // 1024} vs {long_peak // 1024}"
    )


def test_a_run_over_a_compaction_is_credited_with_its_own_batches_only(tmp_path):
    # The run's window holds a compact batch of each sink (ids drift apart: 49,999 and 25,009).
    lake = HistoryLake(history=49_998, run=12)
    verification = control_plane(lake, settings_for(tmp_path))["verification"]
    assert verification.gold.batches == 12 and verification.gold.new_files == 12 * FILES_PER_BATCH
    assert verification.quarantine.new_rows == 12 * ROWS_PER_FILE
    assert verification.reconciliation["reconciles"] is True


def test_a_batch_without_a_ledger_entry_is_read_from_the_sink_log_and_the_run_is_unreconciled(tmp_path):
    # Batch 999 is a compaction batch: its files are the compact file minus the files before it.
    lake = HistoryLake(history=999, run=RUN_BATCHES, missing_ledger={("gold", 999)})
    results = control_plane(lake, settings_for(tmp_path))
    verification = results["verification"]
    assert verification.gold.slow_path_batches == 1
    assert verification.gold.new_files == RUN_BATCHES * FILES_PER_BATCH
    assert verification.ledger["complete"] is False
    report = build_report(results["plan"], verification, None, None, 1, None, datetime.now(timezone.utc))
    assert report.status == "UNRECONCILED"


def test_counts_that_do_not_reconcile_are_not_reported_as_succeeded(tmp_path):
    lake = HistoryLake(history=100, run=RUN_BATCHES)
    results = control_plane(lake, settings_for(tmp_path))
    verification = results["verification"].model_copy(
        update={"reconciliation": {**results["verification"].reconciliation, "reconciles": False, "difference": 5}}
    )
    report = build_report(results["plan"], verification, None, None, 1, None, datetime.now(timezone.utc))
    assert report.status == "UNRECONCILED" and report.reconciliation["difference"] == 5
    honest = build_report(results["plan"], results["verification"], None, None, 1, None, datetime.now(timezone.utc))
    assert honest.status == "SUCCEEDED"


def test_a_pending_mark_after_the_attempt_started_drains_one_before_does_not(tmp_path):
    lake = HistoryLake(history=100, run=RUN_BATCHES)
    settings = settings_for(tmp_path)
    results = control_plane(lake, settings)
    assert results["release"].next == "finish"
    plan = results["plan"]
    leases = FileLeaseStore(settings.lease_store)
    leases.acquire(plan.lease.key, plan.run_id, 600)
    leases.mark_pending(plan.lease.key, now=lake.batch_time(lake.before("gold") + 1) + 5)
    decision = release_for_run(plan, 0, "succeeded", 2, settings, lake, leases, plan.attempt.run_id)
    assert decision.next == "drain" and decision.unprocessed == 1 and leases.get(plan.lease.key).holder == plan.run_id


def test_a_replayed_batch_moves_aside_only_newer_uncommitted_files_in_its_partitions(tmp_path):
    lake = HistoryLake(history=1_000, run=RUN_BATCHES, replayed={("gold", 1_001)})
    partition = lake.files("gold", 1_001)[0].rsplit("/", 1)[0]
    leftover = f"{partition}/part-001001-crashed.c000.snappy.parquet"
    lake.leftovers[leftover] = lake.batch_time(1_001) - 10  # after the batch was planned
    verification = control_plane(lake, settings_for(tmp_path))["verification"]
    assert verification.gold.moved_aside == 1 and [m[0] for m in lake.moved] == [leftover]
    assert verification.gold.examples["moved"][0].endswith("part-001001-crashed.c000.snappy.parquet")


@pytest.mark.parametrize("files_per_batch", [60])
def test_state_payloads_stay_far_under_the_limit_whatever_the_run_wrote(tmp_path, monkeypatch, files_per_batch):
    # A large run: 100 batches of 60 files each into hundreds of partitions, 750 files moved aside.
    monkeypatch.setattr("tests.unit.history_lake.FILES_PER_BATCH", files_per_batch)
    lake = HistoryLake(history=10, run=100, replayed={("gold", b) for b in range(10, 110)})
    for batch in range(10, 110):
        for i in range(0, files_per_batch, 8):
            partition = lake.files("gold", batch)[i].rsplit("/", 1)[0]
            lake.leftovers[f"{partition}/part-{batch:06d}-left-{i}.c000.snappy.parquet"] = lake.batch_time(batch)
    results = control_plane(lake, settings_for(tmp_path))
    verification = results["verification"]
    assert verification.gold.new_files == 100 * files_per_batch and verification.gold.partitions > 100
    leftovers = len(lake.moved)
    assert verification.gold.moved_aside == leftovers == 100 * len(range(0, files_per_batch, 8))
    for payload in (verification, results["assessment"], results["release"]):
        size = len(payload.model_dump_json())
        assert size < 16 * 1024, (type(payload).__name__, size)
    report = build_report(results["plan"], verification, None, None, 1, None, datetime.now(timezone.utc))
    assert len(report.model_dump_json()) < 16 * 1024
    assert report.records["gold"] == 100 * files_per_batch * ROWS_PER_FILE and report.gold_partitions > 100
    document = json.loads(lake.written[verification.document])
    assert len(document["gold"]["moved_aside"]) == leftovers
    assert len(document["gold"]["rows_by_partition"]) == verification.gold.partitions
    assert len(PARQUET) > 0


def test_orphans_are_moved_only_when_no_driver_can_commit_them(tmp_path):
    """A file written after the last replayed batch committed may belong to a batch still being
    written; and with a driver that may still be alive (`may_move` fails) nothing moves at all."""
    lake = HistoryLake(history=1_000, run=RUN_BATCHES, replayed={("gold", 1_001)})
    partition = lake.files("gold", 1_001)[0].rsplit("/", 1)[0]
    crashed = f"{partition}/part-001001-crashed.c000.snappy.parquet"
    in_flight = f"{partition}/part-001002-in-flight.c000.snappy.parquet"
    lake.leftovers[crashed] = lake.batch_time(1_001) - 10  # before the replay committed (batch_time + 30)
    lake.leftovers[in_flight] = lake.batch_time(1_001) + 31  # after it
    plan = plan_run({"generate": False}, "run-1", settings_for(tmp_path), lake)
    window = {query: lake.before(query) for query in ("gold", "quarantine")}
    withheld = verify_gold(plan, window, lake, may_move=lambda: False)
    assert withheld.gold.moved_aside == 0 and lake.moved == []
    assert "may still be writing" in withheld.gold.moves_withheld
    notes = [uri for uri in lake.written if "/orphans-withheld/" in uri]
    assert len(notes) == 1 and json.loads(lake.written[notes[0]])["files"] == [crashed]
    # The next run's window no longer holds the replayed batch: the note is how it finds the orphan.
    later = plan_run({"generate": False}, "run-2", settings_for(tmp_path), lake)
    proofs = []
    after = {query: lake.last(query) for query in ("gold", "quarantine")}
    moved = verify_gold(later, after, lake, may_move=lambda: proofs.append(1) or True)
    assert [m[0] for m in lake.moved] == [crashed] and moved.gold.moved_aside == 1
    assert proofs == [1], "the lease is proven once per verification, before the first move"
    assert not [uri for uri in lake.written if "/orphans-withheld/" in uri], "the note is cleared"


def manifests_of(lake: HistoryLake, sink: str) -> dict[tuple[str, str], list[str]]:
    """(partition, manifest name) -> the files it lists, as Athena would read them."""
    prefix = f"{sink}/{MANIFEST_FOLDER}/"
    written = {uri[len(prefix) :]: data for uri, data in lake.written.items() if uri.startswith(prefix)}
    return {tuple(path.rsplit("/", 1)): data.decode().splitlines() for path, data in written.items()}


def window_files(lake: HistoryLake, query: str, first: int, last: int) -> dict[tuple[str, str], list[str]]:
    """(partition, `batch-<n>`) -> the files batch n committed there, by their real keys."""
    sink = GOLD if query == "gold" else QUARANTINE
    by_batch: dict[tuple[str, str], list[str]] = {}
    for batch in range(first, last + 1):
        for uri in lake.files(query, batch):
            if uri not in lake.gone:
                partition = uri.rsplit("/", 1)[0][len(sink) + 1 :]
                by_batch.setdefault((partition, f"batch-{batch}"), []).append(uri)
    return by_batch


def test_athena_reads_exactly_the_windows_committed_files_through_a_manifest_per_partition_and_batch(tmp_path):
    """The manifests VerifyGold writes list each committed file of the window once, by its real
    key (not the log's percent-encoding), never a crashed attempt's file and never one it could
    not verify; they are written before the window counts as verified, and verifying the same
    window again writes the same bytes."""
    lake = HistoryLake(history=1_000, run=RUN_BATCHES, replayed={("gold", 1_001)})
    partition = lake.files("gold", 1_001)[0].rsplit("/", 1)[0]
    leftover = f"{partition}/part-001001-crashed.c000.snappy.parquet"
    lake.leftovers[leftover] = lake.batch_time(1_001) - 10
    lake.gone.add(lake.files("gold", 1_002)[3])
    verification = control_plane(lake, settings_for(tmp_path))["verification"]
    assert verification.gold.missing_files == 1
    for query, sink in (("gold", GOLD), ("quarantine", QUARANTINE)):
        expected = window_files(lake, query, lake.before(query) + 1, lake.last(query))
        assert manifests_of(lake, sink) == expected, query
        assert getattr(verification, query).manifests_written == len(expected), query
    assert " ü/" in next(iter(manifests_of(lake, GOLD).values()))[0], "the real key, not the logged %-spelling"
    first = {uri: data for uri, data in lake.written.items() if MANIFEST_FOLDER in uri}
    plan = plan_run({"generate": False}, "run-1", settings_for(tmp_path), lake)
    verify_gold(plan, {q: lake.before(q) for q in ("gold", "quarantine")}, lake, may_move=lambda: True)
    assert {uri: data for uri, data in lake.written.items() if MANIFEST_FOLDER in uri} == first


@pytest.mark.parametrize("dies_at", ["verification.json", "reconciliation-carry.json", "verified-through.json"])
def test_a_window_is_recorded_as_verified_only_after_its_manifests_and_document_exist(tmp_path, monkeypatch, dies_at):
    """Once a window counts as verified no later run covers it again: its manifests (Athena's
    files) and its verification document (ReportStatus's partitions) must already be written."""
    lake = HistoryLake(history=1_000, run=RUN_BATCHES)
    write = lake.write_bytes

    def die_on(uri, data):
        if uri.endswith(f"/{dies_at}"):
            raise OSError("VerifyGold killed")
        write(uri, data)

    monkeypatch.setattr(lake, "write_bytes", die_on)
    plan = plan_run({"generate": False}, "run-1", settings_for(tmp_path), lake)
    with pytest.raises(OSError, match="killed"):
        verify_gold(plan, {q: lake.before(q) for q in ("gold", "quarantine")}, lake, may_move=lambda: True)
    assert not [uri for uri in lake.written if uri.endswith("/verified-through.json")]
    assert manifests_of(lake, GOLD) == window_files(lake, "gold", lake.before("gold") + 1, lake.last("gold"))
