"""The real statemachine/pipeline.asl.json, executed locally (moto's ASL engine) with the real
Lambda handlers, generator and Spark job; asserted through the execution history.

Every execution's states, Choice branches and Catch edges are recorded: at the end of the suite,
every one of them must have been taken by some test here or in the fault matrix (tests/conftest.py).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from generator.shards import read_manifests, summarise
from iotpipe.cli import run_exit_status
from iotpipe.lake.storage import LocalStorage
from iotpipe.local.bindings import TaskError
from iotpipe.local.watch import watch
from iotpipe.run.history import read_history
from iotpipe.run.lease_store import FileLeaseStore
from tests.orchestration.harness import (
    assert_readers_agree,
    created,
    engine,
    generate_into,
    gold_counts,
    iceberg_table,
    local_settings,
    record_coverage,
    run,
    terminated,
    truth,
    upload_after_first_step,
)

pytestmark = pytest.mark.spark


def test_happy_path_generates_transforms_verifies_and_reports(tmp_path):
    # Two batches leave two small files in a partition: maintenance is due from two on.
    execution = run(tmp_path, {"size": "4MiB", "shards": 2, "seed": 3},
                    settings=local_settings(tmp_path, maintenance_after_commits=2))  # fmt: skip
    assert execution.status == "SUCCEEDED"
    report = execution.report
    expected = truth(tmp_path)
    assert report["status"] == "SUCCEEDED"
    assert report["records"] == {
        "input": expected["records"],
        "gold": expected["gold"],
        "quarantined": sum(expected["quarantined"].values()),
        "duplicates": expected["duplicates"],
    }
    assert report["quarantined_by_reason"] == {k: v for k, v in expected["quarantined"].items() if v}
    assert gold_counts(tmp_path) == (expected["gold"], expected["gold"])
    assert created(execution) == terminated(execution) and len(created(execution)) == 1
    # Table maintenance ran after VerifyGold found it due: two batches' small files merged, for every reader at once.
    assert execution.state_output("VerifyGold")["verification"]["maintenance"]["due"] is True
    gold = report["maintenance"]["tables"]["gold"]
    assert gold["files_rewritten"] > gold["files_written"] > 0 and gold["files_after"] < gold["files_before"]
    assert "iotpipe.maintenance" in iceberg_table(tmp_path, "gold").current_snapshot().summary.additional_properties
    assert assert_readers_agree(tmp_path)["gold"] == expected["gold"]
    manifest = json.loads(Path(report["manifest"]).read_text())
    assert manifest["report"]["status"] == "SUCCEEDED" and manifest["verification"]["ok"] is True
    assert [what for what, _ in execution.bindings.calls].count("sns") == 1


@pytest.mark.parametrize(
    "bad_input,message",
    [
        ({"size": "lots"}, "size"),
        ({"shards": 0}, "shards"),
        ({"sizee": "1GiB"}, "sizee"),
        ({"cluster_id": "not-a-cluster"}, "cluster_id"),
        ([1, 2], "JSON object"),
        ({"started_by": "someone"}, "started_by"),
    ],
)
def test_bad_input_fails_fast_before_any_side_effect(tmp_path, bad_input, message):
    execution = run(tmp_path, bad_input)
    assert execution.status == "FAILED" and execution.error == "InvalidExecutionInput"
    assert message in execution.cause
    assert [what for what, _ in execution.bindings.calls] == ["lambda"]
    assert execution.entered_states() == ["PlanRun", "InputRejected"]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_deployment_without_the_spark_job_fails_in_plan_run_before_any_side_effect(tmp_path):
    # `sam deploy` alone: the artifacts bucket has no spark/job.py
    settings = local_settings(tmp_path, spark_job_uri=str(tmp_path / "artifacts" / "spark" / "job.py"))
    execution = run(tmp_path, {"days": 1, "size": "4MiB", "shards": 2}, settings)
    assert execution.status == "FAILED" and execution.error == "SparkArtifactsMissing"
    assert "artifacts/spark/job.py" in execution.cause and "make deploy" in execution.cause
    assert execution.entered_states() == ["PlanRun"]
    assert [what for what, _ in execution.bindings.calls] == ["lambda"]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_an_s3_event_processes_only_new_bronze_on_an_existing_cluster_path(tmp_path):
    first = run(tmp_path, {"days": 1, "size": "2MiB", "shards": 1, "seed": 7})
    assert first.report["status"] == "SUCCEEDED"
    assert_readers_agree(tmp_path)
    # An existing cluster must carry this stack's tag, or the state machine role may not use it.
    # A strict quality policy in the execution input: the run breaks it, and the user chose "fail".
    strict = {"min_gold_rows": 10**9, "on_breach": "fail"}
    second = run(tmp_path, {"days": 1, "size": "2MiB", "shards": 1, "seed": 8, "cluster_id": "j-EXISTING1",
                            "quality": strict},
                 customise=lambda b: b.cluster_tags.update({"j-EXISTING1": {"iotpipe-stack": "iotpipe"}}))  # fmt: skip
    new_truth = summarise(read_manifests(str(tmp_path / "bronze" / "raw"), seed=8))
    assert second.report["records"]["gold"] == new_truth["gold"]
    assert second.report["records"]["input"] == new_truth["records"]
    # The data is written and accounted for; the status, the report, the SNS subject and the exit say why.
    assert second.report["status"] == "QUALITY_FAILED" and run_exit_status([second.report]) == 1
    assert second.status == "FAILED" and second.error == "RunFailed"  # the execution fails too
    assert second.report["quality_breaches"] == [
        {"rule": "min_gold_rows", "figure": new_truth["gold"], "threshold": 10**9,
         "description": f"{new_truth['gold']:,} Gold rows from {new_truth['records']:,} input records"}
    ]  # fmt: skip
    assert json.loads(Path(second.report["manifest"]).read_text())["report"]["quality_policy"]["min_gold_rows"] == 10**9
    assert ("sns", "iotpipe run QUALITY_FAILED") in second.bindings.calls
    assert "UseExistingCluster" in second.entered_states() and terminated(second) == []
    assert assert_readers_agree(tmp_path)["gold"] == truth(tmp_path)["gold"]
    event = json.loads((Path(__file__).parent.parent / "events" / "s3_object_created.json").read_text())
    third = run(tmp_path, event)
    assert third.status == "SUCCEEDED" and third.report["trigger"] == "s3-event"
    assert third.report["records"]["input"] == 0
    assert "GenerateShards" not in third.entered_states()


def test_a_generator_failure_is_caught_reported_and_releases_nothing_it_did_not_take(tmp_path):
    (tmp_path / "bronze").mkdir()
    (tmp_path / "bronze" / "raw").write_text("a file where the Bronze folder should be")
    execution = run(tmp_path, {"days": 1, "size": "2MiB", "shards": 2})
    assert execution.status == "FAILED"
    # AWS reports the failed iteration's States.TaskFailed; moto 5.2.5's Map re-raises it as States.Runtime.
    assert execution.report["status"] == "FAILED" and execution.report["error"]["Error"] in (
        "States.TaskFailed",
        "States.Runtime",
    )
    failed_tasks = [e for e in execution.history if e["type"] == "TaskFailed"]
    exit_codes = [json.loads(e["taskFailedEventDetails"]["cause"])["Containers"][0]["ExitCode"] for e in failed_tasks]
    assert exit_codes and all(code != 0 for code in exit_codes), exit_codes
    assert created(execution) == [] and "RunSparkStep" not in execution.entered_states()


def test_a_cluster_that_cannot_be_created_is_reported_as_failed(tmp_path):
    def refuse_clusters(bindings):
        def create_cluster(parameters):
            raise TaskError("EMR.AmazonElasticMapReduceException", "the subnet has no free addresses")

        bindings.create_cluster = create_cluster

    execution = run(tmp_path, {"generate": False}, customise=refuse_clusters)
    assert execution.report["status"] == "FAILED"
    assert execution.report["error"]["Error"] == "EMR.AmazonElasticMapReduceException"


def test_failures_in_verify_terminate_and_publish_are_each_caught(tmp_path):
    def break_three_things(bindings):
        def verify_crashes(event, context):
            raise RuntimeError("verification crashed")

        def terminate_fails(parameters):
            raise TaskError("EMR.InternalServerException", "try again later")

        def publish_fails(parameters):
            raise TaskError("SNS.AuthorizationErrorException", "not authorised")

        bindings.lambda_handlers["verify_gold"] = verify_crashes
        bindings.terminate_cluster = terminate_fails
        bindings.publish_report = publish_fails

    execution = run(tmp_path, {"days": 1, "size": "2MiB", "shards": 1, "seed": 9}, customise=break_three_things)
    assert execution.status == "FAILED"
    assert execution.report["status"] == "FAILED" and execution.report["error"]["Error"] == "RuntimeError"
    assert execution.state_output("ReportStatus")["termination_error"]["Error"] == "EMR.InternalServerException"
    assert execution.state_output("PublishReport")["publish_error"]["Error"] == "SNS.AuthorizationErrorException"


def test_a_crash_of_the_assessment_itself_is_caught_and_the_cluster_still_released(tmp_path):
    def assessment_crashes(bindings):
        def crash(event, context):
            raise RuntimeError("assessment crashed")

        bindings.lambda_handlers["assess_step_failure"] = crash

    execution = run(
        tmp_path,
        {"days": 1, "size": "2MiB", "shards": 2, "fault_injection": "fail-at-start"},
        customise=assessment_crashes,
    )
    assert execution.report["status"] == "FAILED" and execution.report["error"]["Error"] == "RuntimeError"
    assert created(execution) == terminated(execution) and len(created(execution)) == 1


def test_data_arriving_mid_run_is_drained_by_the_same_run(tmp_path):
    execution = run(
        tmp_path, {"days": 1, "size": "2MiB", "shards": 2, "seed": 12}, customise=upload_after_first_step(tmp_path, 99)
    )
    expected = truth(tmp_path)
    assert execution.report["status"] == "SUCCEEDED" and execution.report["drain_rounds"] == 1
    assert "PrepareDrain" in execution.entered_states()
    assert execution.report["records"]["input"] == expected["records"]
    assert gold_counts(tmp_path) == (expected["gold"], expected["gold"])
    # Fewer than five commits added files to a table and no snapshot is old enough to
    # expire: VerifyGold finds no work for maintenance, no Spark application is started for it,
    # and the report says why.
    assert "MaintainTables" not in execution.entered_states()
    assert execution.report["maintenance"]["not_due"].startswith("fewer than 5 commits added files")
    assert_readers_agree(tmp_path)


def test_when_drain_rounds_run_out_a_follow_up_run_takes_the_rest(tmp_path):
    # No malformed line allowed, warn only: both runs warn, the follow-up under the same policy.
    quality = {"max_quarantine_ratio_by_reason": {"malformed_json": 0}}
    events = []
    with engine(tmp_path, customise=upload_after_first_step(tmp_path, 98),
                on_event=lambda kind, detail: events.append((kind, detail))) as local:  # fmt: skip
        executions = local.run(
            {"days": 1, "size": "2MiB", "shards": 2, "seed": 13, "max_drain_rounds": 0, "quality": quality}
        )
    for execution in executions:
        record_coverage(execution)
    first, follow_up = executions
    assert "StartFollowUpRun" in first.entered_states()
    assert first.report["status"] == "SUCCEEDED_WITH_QUALITY_WARNING"
    assert follow_up.report["trigger"] == "follow-up" and follow_up.report["status"] == "SUCCEEDED_WITH_QUALITY_WARNING"
    for report in (first.report, follow_up.report):
        (breach,) = report["quality_breaches"]
        assert breach["rule"] == "max_quarantine_ratio_by_reason.malformed_json" and breach["threshold"] == 0
        assert breach["figure"] == report["quarantined_by_reason"]["malformed_json"] / report["records"]["input"]
    assert run_exit_status([first.report, follow_up.report]) == 0
    # Long work is never silent: each shard's bytes and the running batch's tasks came as they went.
    shards_seen = {detail["shard"] for kind, detail in events if kind == "generator-progress"}
    assert shards_seen == {0, 1}
    tasks = [detail for kind, detail in events if kind == "spark-tasks"]
    assert tasks and all(set(detail["batches"]) == {"transform"} for detail in tasks)
    expected = truth(tmp_path)
    assert first.report["records"]["input"] + follow_up.report["records"]["input"] == expected["records"]
    assert gold_counts(tmp_path) == (expected["gold"], expected["gold"])
    # The run history (`iotpipe report`, and the page ReportStatus writes) shows both runs, newest first.
    history = read_history(LocalStorage(), str(tmp_path / "artifacts" / "runs"))
    assert [(r.run_id, r.records) for r in history] == [
        (e.report["run_id"], e.report["records"]) for e in (follow_up, first)
    ]
    assert (
        sum(rows for r in history for cities in r.gold_rows_by_date_city.values() for rows in cities.values())
        == (expected["gold"])
    )
    page = (tmp_path / "artifacts" / "runs" / "history.html").read_text()
    assert first.report["run_id"] in page and follow_up.report["run_id"] in page


def test_a_follow_up_run_that_cannot_start_fails_the_run_loudly(tmp_path):
    def upload_then_refuse_follow_ups(bindings):
        upload_after_first_step(tmp_path, 97)(bindings)

        def refuse(parameters):
            raise TaskError("StepFunctions.ExecutionLimitExceededException", "too many executions")

        bindings.start_execution = refuse

    execution = run(
        tmp_path,
        {"days": 1, "size": "2MiB", "shards": 2, "seed": 15, "max_drain_rounds": 0},
        customise=upload_then_refuse_follow_ups,
    )
    assert execution.report["status"] == "FAILED"
    assert execution.report["error"]["Error"] == "StepFunctions.ExecutionLimitExceededException"


def test_a_dead_holders_lease_is_taken_over_after_expiry(tmp_path):
    settings = local_settings(tmp_path)
    FileLeaseStore(settings.lease_store).acquire(settings.lease_key, "a-run-that-died", seconds=3)
    execution = run(tmp_path, {"days": 1, "size": "2MiB", "shards": 1, "seed": 14}, settings=settings)
    assert execution.report["status"] == "SUCCEEDED"
    assert execution.entered_states().count("WaitForLease") >= 2
    assert FileLeaseStore(settings.lease_store).get(settings.lease_key).holder is None


def test_two_racing_runs_never_run_two_spark_steps_at_once(tmp_path):
    intervals = []

    def timed_steps(bindings):
        real = bindings.run_spark_step

        def step(args, step_id):
            started = time.monotonic()
            result = real(args, step_id)
            intervals.append((started, time.monotonic()))
            return result

        bindings.run_spark_step = step

    generate_into(tmp_path, 21)
    settings = local_settings(tmp_path, lease_wait_rounds=120)
    with engine(tmp_path, settings, customise=timed_steps) as local:
        first = local.start({"days": 1, "size": "2MiB", "shards": 2, "seed": 22}, "console-run")
        second = local.start({"generate": False}, "triggered-run")
        executions = [local.wait(first), local.wait(second)]
    for execution in executions:
        record_coverage(execution)
    assert [e.report["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    # Each run's job step (and its maintenance step, were it due: it writes under the lease too,
    # tested with a live driver in the fault matrix): never two at once. Which run wins the lease,
    # and so which one finds Bronze left to process, depends on timing.
    maintaining = [e for e in executions if "MaintainTables" in e.entered_states()]
    assert len(intervals) == len(executions) + len(maintaining)
    ordered = sorted(intervals)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ordered, ordered[1:]))
    assert any("WaitForLease" in e.entered_states() for e in executions)
    expected = truth(tmp_path)
    assert sum(e.report["records"]["input"] for e in executions) == expected["records"]
    assert gold_counts(tmp_path) == (expected["gold"], expected["gold"])


def test_crashes_of_the_lease_functions_are_caught(tmp_path):
    def acquire_crashes(bindings):
        def crash(event, context):
            raise ConnectionError("lease table unreachable")

        bindings.lambda_handlers["acquire_lease"] = crash

        def release_crash(event, context):
            raise ConnectionError("lease table unreachable")

        bindings.lambda_handlers["release_lease"] = release_crash

    execution = run(tmp_path, {"generate": False}, customise=acquire_crashes)
    assert execution.report["status"] == "FAILED" and execution.report["error"]["Error"] == "ConnectionError"
    assert execution.state_output("ReportStatus")["drain"]["error"]["Error"] == "ConnectionError"


def test_watch_processes_three_waves_of_uploads(tmp_path):
    # Each wave is uploaded once the run for the one before has ended: a wave uploaded while a
    # run is going may rightly be taken into that run, which leaves nothing for a third.
    summaries, finished = [], []
    with engine(tmp_path, local_settings(tmp_path, max_files_per_trigger=8)) as local:
        watcher = threading.Thread(
            target=lambda: summaries.append(
                watch(local, interval=0.3, delay=0.5, max_runs=3, idle_exit=60, on_run=finished.append)
            )
        )
        watcher.start()
        for wave, seed in enumerate((31, 32, 33), start=1):
            generate_into(tmp_path, seed)
            deadline = time.monotonic() + 240
            while watcher.is_alive() and len(finished) < wave:
                assert time.monotonic() < deadline, "watch did not run for a wave"
                time.sleep(0.2)
        watcher.join(timeout=240)
    (summary,) = summaries
    assert [r.status for r in summary.runs] == ["SUCCEEDED"] * 3
    expected = truth(tmp_path)
    assert sum(r.records["input"] for r in summary.runs) == expected["records"]
    assert gold_counts(tmp_path) == (expected["gold"], expected["gold"])
    print(f"\nwatch: {len(summary.runs)} runs, seconds per run {[r.seconds for r in summary.runs]}")


def test_a_committed_gold_file_that_vanishes_is_unreconciled_and_nothing_is_maintained(tmp_path):
    """VerifyGold finds a file Gold's commit added missing: its rows are not in Gold, so the run
    does not reconcile (UNRECONCILED, the file named), and the tables are left as they are for an
    operator (no maintenance rewrites the partitions around the hole)."""

    def job_step_loses_a_gold_file(bindings):
        run_step = bindings.run_spark_step

        def step(args, step_id):
            result = run_step(args, step_id)
            if not any(a.endswith("maintain.py") for a in args):
                min(Path(tmp_path, "gold", "iot_transformed", "data").rglob("*.parquet")).unlink()
            return result

        bindings.run_spark_step = step

    execution = run(tmp_path, {"days": 1, "size": "2MiB", "shards": 2, "seed": 5}, customise=job_step_loses_a_gold_file,
                    settings=local_settings(tmp_path, maintenance_after_commits=2))  # fmt: skip
    assert execution.report["status"] == "UNRECONCILED"
    verification = execution.state_output("VerifyGold")["verification"]
    assert verification["gold"]["missing_files"] == 1 and verification["gold"]["examples"]["missing"]
    assert (
        execution.report["reconciliation"]["difference"]
        == verification["gold"]["committed_rows"] - verification["gold"]["new_rows"]
        > 0
    )
    # The tables had work for maintenance (two batches' files), yet an unreconciled run leaves them be.
    assert verification["maintenance"]["due"] is True
    assert "MaintainTables" not in execution.entered_states()
    assert "ReleaseLease" in execution.entered_states()


AWKWARD_KEYS = ("with space.jsonl", "per%cent.jsonl", "plus+sign.jsonl", "ünïcode-城市.jsonl")


def write_wave(lake: Path, seed: int, awkward_only: bool = False) -> int:
    """Bronze objects with keys Spark's source log spells URL-encoded, a 30-day-old object and a gzip
    object, cut from freshly generated lines; plus objects the job does not read. Returns the lines."""
    scratch = lake.parent / f"scratch-{seed}"
    subprocess.run(
        [sys.executable, "-m", "iotpipe.cli", "generate", "--out", str(scratch), "--size", "1MiB", "--seed", str(seed)],
        check=True,
        capture_output=True,
    )
    lines = next(p for p in scratch.rglob("*.jsonl") if "_" not in p.name).read_bytes().splitlines(keepends=True)
    names = AWKWARD_KEYS if awkward_only else (*AWKWARD_KEYS, "backfill-30-days-old.jsonl", "firehose-delivery.gz")
    wave = lake / "bronze" / "raw" / "wave"
    wave.mkdir(parents=True)
    chunks = [lines[i :: len(names)][:200] for i in range(len(names))]
    for name, chunk in zip(names, chunks):
        data = b"".join(chunk)
        (wave / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    if not awkward_only:
        month_ago = time.time() - 30 * 24 * 3600
        os.utime(wave / "backfill-30-days-old.jsonl", (month_ago, month_ago))
    (wave / "notes.txt").write_text("not data")
    (wave / ".hidden.jsonl").write_bytes(chunks[0][0])
    return sum(len(chunk) for chunk in chunks)


def watch_until_idle(lake: Path, max_runs: int = 3) -> list:
    with engine(lake, local_settings(lake, max_files_per_trigger=8)) as local:
        summary = watch(local, interval=0.3, delay=0.5, max_runs=max_runs, idle_exit=3)
    return summary.runs


@pytest.mark.parametrize(
    "awkward_only",
    [
        pytest.param(True, id="awkward-keys"),
        pytest.param(False, id="awkward-keys-old-and-gzip"),
    ],
)
def test_a_wave_with_awkward_keys_is_processed_once_and_ignored_objects_start_no_run(tmp_path, awkward_only):
    first = run(tmp_path, {"days": 1, "size": "1MiB", "shards": 1, "seed": 41})
    assert first.report["status"] == "SUCCEEDED"
    lines = write_wave(tmp_path, 42, awkward_only)

    runs = watch_until_idle(tmp_path)

    # One run took the whole wave; afterwards nothing was left unprocessed, so watch went idle
    # instead of starting a run per poll (the URL-encoded source-log paths used to look unread).
    assert [r.status for r in runs] == ["SUCCEEDED"], [(r.name, r.status, r.records) for r in runs]
    assert runs[0].records["input"] == lines
    manifest = json.loads((tmp_path / "artifacts" / "runs" / f"{runs[0].name}.json").read_text())
    assert manifest["report"]["drain_rounds"] == 0
    assert manifest["report"]["ignored_objects"]["count"] == 2
    assert manifest["report"]["ignored_objects"]["by_reason"] == {"hidden": 1, "other-format": 1}

    # An object the job does not read starts no run.
    (tmp_path / "bronze" / "raw" / "wave" / "later.csv").write_text("a,b\n")
    assert watch_until_idle(tmp_path) == []
