"""VerifyGold, AssessStepFailure, ReleaseLease and ReportStatus's search for runs that died before
their report do work that grows with the run, not with the tables' history, and every payload
they return stays far under Step Functions' 256 KiB limit.

The lake holds real Iceberg commits, a short and a long history of earlier runs' batches, then the
run's own (tests/unit/history_lake.py). Its storage counts requests by function and kind, refuses
any listing under a table's location, and keeps every manifest list, manifest and metadata file
read: the run's own and the tables' current metadata are the only ones a function may read.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iotpipe.lake.tables import GOLD
from iotpipe.local.limits import function_limits
from iotpipe.run.assess import assess_step_failure
from iotpipe.run.lease import release_for_run
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.report import build_report, write_manifest
from iotpipe.run.unreported import report_dead_runs
from iotpipe.run.verify import verify_gold
from tests.unit.history_lake import CITIES, ROWS, HistoryLake

STATE_LIMIT = 256 * 1024
RUN_BATCHES = 3
# Batches of history before the run, by three earlier runs; each has more than one batch in both,
# so the dead-run search's look at the last reported run (whose later batches follow the point up
# to which every run has reported) is the same in both.
SHORT, LONG = 6, 24


def control_plane(lake: HistoryLake) -> dict:
    """One run's evidence work, each function's requests counted under its code folder, its peak of
    traced memory in `peaks`: AssessStepFailure (a false FAILED), VerifyGold, ReleaseLease, and
    ReportStatus's dead-run search (after the run's own manifest, as ReportStatus does it)."""
    plan, settings, storage = lake.plan, lake.settings, lake.storage
    started = datetime.now(timezone.utc)
    summary = Path(settings.checkpoint_uri) / "runs" / f"{plan.attempt.run_id}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"finished_at": started.isoformat(), "seconds": 30}))
    leases = FileLeaseStore(settings.lease_store)
    leases.acquire(plan.lease.key, plan.run_id, 600)
    leases.mark_pending(plan.lease.key, now=started.timestamp() - 120)  # our own uploads, before the step
    storage.requests.clear()
    peaks: dict[str, int] = {}

    def measured(function: str, call):
        tracemalloc.start()
        try:
            with storage.acting_as(function):
                result = call()
            peaks[function] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return result

    database = settings.catalog_database
    results = {
        "assessment": measured("assess_step_failure", lambda: assess_step_failure(
            {"Error": "States.TaskFailed"}, plan, plan.attempt, settings, storage, lake.glue)),
        "verification": measured("verify_gold", lambda: verify_gold(plan, storage, lake.glue, database)),
        "release": measured("release_lease", lambda: release_for_run(
            plan, 0, "succeeded", 2, settings, storage, leases, plan.attempt.run_id)),
    }  # fmt: skip
    report = build_report(plan, results["verification"], None, None, 1, None, started)
    write_manifest(report, results["verification"], storage.inner)
    results["reported_for"] = measured("report_status", lambda: report_dead_runs(
        plan, storage, lake.glue, database, lake.sfn, started))  # fmt: skip
    return {**results, "report": report, "peaks": peaks, "requests": dict(storage.requests)}


@pytest.fixture(scope="module")
def lakes(tmp_path_factory) -> dict[str, HistoryLake]:
    return {size: HistoryLake(tmp_path_factory.mktemp(f"lake-{size}"), history, RUN_BATCHES)
            for size, history in (("short", SHORT), ("long", LONG))}  # fmt: skip


@pytest.fixture(scope="module")
def measured(lakes) -> dict[str, dict]:
    return {size: control_plane(lake) for size, lake in lakes.items()}


def test_the_evidence_work_of_a_run_does_not_grow_with_the_tables_history(lakes, measured):
    short, long = measured["short"], measured["long"]
    assert long["requests"] == short["requests"]
    print(f"\nevidence work, {SHORT} vs {LONG} batches of history: {long['requests']}")
    assert long["requests"][("verify_gold", "GetTable")] == 3, "one catalog lookup per table"
    assert long["requests"][("assess_step_failure", "GetTable")] == 3
    assert long["requests"][("report_status", "GetTable")] == 1, "the seen-id store only"
    memory = function_limits()
    for function, peak in long["peaks"].items():  # traced memory leaves out the interpreter
        assert peak < memory[function].memory_mb * 2**20 / 4, (function, peak, memory[function])


def test_only_the_runs_own_manifests_and_the_current_metadata_are_read(lakes, measured):
    lake = lakes["long"]
    own = lake.runs_own_avro_files()
    assert lake.storage.avro_read and set(lake.storage.avro_read) <= own
    assert {uri for uri in lake.storage.avro_read if "snap-" not in uri}, "the run's manifests, not only their lists"
    assert set(lake.storage.metadata_read) <= lake.current_metadata_files()


def test_the_work_counted_is_the_runs_verified_as_it_committed_it(measured):
    results = measured["long"]
    verification = results["verification"]
    gold_rows = RUN_BATCHES * len(CITIES) * ROWS
    assert verification.ok and verification.gold.batches == RUN_BATCHES and verification.gold.first_batch == LONG
    assert (verification.gold.new_files, verification.gold.new_rows) == (RUN_BATCHES * len(CITIES), gold_rows)
    assert verification.counts["input_rows"] == gold_rows + 2 * RUN_BATCHES
    assert verification.reconciliation["reconciles"] and results["report"].status == "SUCCEEDED"
    assert results["assessment"].verdict == "complete"
    assert (results["release"].next, results["release"].released) == ("finish", "released")
    assert results["reported_for"] == [], "every earlier run reported itself"


def test_state_payloads_stay_far_under_the_limit_whatever_the_run_wrote(tmp_path):
    # A run of 3 batches into 60 partitions each, 30 of its files lost since: totals and a few
    # examples travel in the state; every path is in the verification document.
    lake = HistoryLake(tmp_path, history=1, run=3, cities=60)
    lost = [uri for uri in lake.data_files(GOLD) if "St. John" not in uri][:30]
    for uri in lost:
        Path(uri).unlink()
    results = control_plane(lake)
    verification = results["verification"]
    assert verification.gold.new_files == 3 * 60 - 30 and verification.gold.partitions == 60
    assert verification.gold.missing_files == 30 and len(verification.gold.examples["missing"]) == 5
    for payload in (verification, results["assessment"], results["release"], results["report"]):
        size = len(payload.model_dump_json())
        assert size < 16 * 1024, (type(payload).__name__, size)
    assert results["report"].status == "UNRECONCILED" and results["report"].gold_partitions == 60
    document = json.loads(Path(verification.document).read_text())
    assert sorted(document["gold"]["missing_files"]) == sorted(lost)
    assert len(document["gold"]["rows_by_partition"]) == verification.gold.partitions
    assert len(json.dumps(verification.model_dump(mode="json"))) < STATE_LIMIT // 16
