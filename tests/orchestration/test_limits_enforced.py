"""The real definition and Lambda handlers on the local engine, with the generator and the Spark
step bound to fakes (no processes): the limits AWS enforces fail the run here as they would there."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from iotpipe.local.limits import MAX_STATE_PAYLOAD_BYTES, execution_name_problem, json_size
from iotpipe.local.runner import DEFINITION, LocalEngine
from iotpipe.run.settings import Settings


def settings(lake: Path, **overrides) -> Settings:
    values = dict(spark_job_uri=str(DEFINITION.parent.parent / "spark" / "job.py"), lease_wait_seconds=1)
    values.update(overrides)
    return Settings.for_local_lake(str(lake), **values)


def fake_processes(bindings) -> None:
    bindings.run_generator = lambda command: 0
    bindings.run_spark_step = lambda args, step_id: (True, {})


def payload_sizes(execution) -> list[tuple[int, str]]:
    sizes = []
    for event in execution.history:
        for key, field in (("stateEnteredEventDetails", "input"), ("stateExitedEventDetails", "output")):
            if key in event:
                sizes.append((len(event[key][field].encode("utf-8")), event[key]["name"]))
    return sizes


def test_the_largest_allowed_shard_count_keeps_every_state_under_the_payload_limit(tmp_path):
    with LocalEngine(str(tmp_path), settings(tmp_path), customise=fake_processes) as engine:
        execution = engine.wait(engine.start({"shards": 1000, "size": "1000MiB", "seed": 1}))
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    shards = [detail for what, detail in execution.bindings.calls if what == "ecs"]
    # Every shard exactly once (the Map runs them concurrently, in no fixed order).
    indexes = sorted(int(command[command.index("--shard-index") + 1]) for command in shards)
    assert indexes == list(range(1000))
    assert max(payload_sizes(execution))[0] < MAX_STATE_PAYLOAD_BYTES // 8


def test_an_oversize_state_fails_the_run_with_data_limit_exceeded_that_no_catch_catches(tmp_path):
    def oversize_verification(bindings):
        fake_processes(bindings)
        real = bindings.lambda_handlers["verify_gold"]

        def verify(event, context):
            result = real(event, context)
            result["ledger"] = {"padding": "x" * MAX_STATE_PAYLOAD_BYTES}
            return result

        bindings.lambda_handlers["verify_gold"] = verify

    with LocalEngine(str(tmp_path), settings(tmp_path), customise=oversize_verification) as engine:
        execution = engine.wait(engine.start({"generate": False}))
    assert execution.status == "FAILED" and execution.error == "States.DataLimitExceeded"
    assert "ReleaseLease" not in execution.entered_states()  # VerifyGold's Catch (States.ALL) did not catch it


def test_a_spark_step_past_its_timeout_fails_as_states_timeout_and_the_run_still_reports(tmp_path):
    released = threading.Event()
    timeouts = []

    def hung_step(bindings):
        fake_processes(bindings)

        def step(args, step_id):
            timeouts.append(bindings.task_timeout())
            released.wait(20)
            return True, {}

        bindings.run_spark_step = step

    lake_settings = settings(tmp_path, spark_step_timeout_seconds=2, maintenance_timeout_seconds=2)
    started = time.monotonic()
    try:
        with LocalEngine(str(tmp_path), lake_settings, customise=hung_step) as engine:
            execution = engine.wait(engine.start({"generate": False, "max_resume_attempts": 0}))
    finally:
        released.set()
    assert time.monotonic() - started < 15
    assert timeouts[0] == 2  # what the local Spark binding kills spark-submit after
    step_failures = [e for e in execution.history if e["type"] == "TaskTimedOut" or "States.Timeout" in str(e)]
    assert step_failures
    states = execution.entered_states()
    assert "AssessStepFailure" in states and "ReleaseLease" in states and "TerminateCluster" in states
    assert execution.report is not None and execution.report["status"] in ("FAILED", "SUCCEEDED_WITH_STEP_ERROR")


def test_a_chain_of_follow_ups_from_a_long_name_keeps_every_name_valid(tmp_path):
    def always_follow_up(bindings):
        fake_processes(bindings)
        real = bindings.lambda_handlers["release_lease"]
        calls = []

        def release(event, context):
            # Three times no drain round is left (a follow-up, the lease released for it); then
            # the chain ends as a failed run's release does (released, nothing more to start).
            calls.append(1)
            plan = {**event["plan"], "max_drain_rounds": 0}
            stop = {"Error": "Test", "Cause": "end of the chain"}
            return real({**event, "plan": plan, "error": stop if len(calls) > 3 else event["error"]}, context)

        bindings.lambda_handlers["release_lease"] = release

    first = "bronze-20261126T081500Z-" + "0123456789abcdef" * 3 + "-retry-1"
    assert len(first) <= 80
    with LocalEngine(str(tmp_path), settings(tmp_path), customise=always_follow_up) as engine:
        executions = engine.run({"generate": False}, name=first)
    names = [name for what, name in executions[0].bindings.calls if what == "sfn.start"]
    assert len(names) == 3 and len(executions) == 4
    assert all(execution_name_problem(name) is None for name in names)
    assert all(execution.status == "SUCCEEDED" for execution in executions)


@pytest.mark.parametrize("name", ["x" * 81, "has space", "a/b"])
def test_starting_an_execution_with_a_name_aws_refuses_fails_with_invalid_name(tmp_path, name):
    with (
        LocalEngine(str(tmp_path), settings(tmp_path), customise=fake_processes) as engine,
        pytest.raises(ClientError) as caught,
    ):
        engine.start({"generate": False}, name=name)
    assert caught.value.response["Error"]["Code"] == "InvalidName"


def test_the_plan_is_the_same_size_for_one_shard_or_a_thousand(tmp_path):
    from iotpipe.lake.storage import LocalStorage
    from iotpipe.run.plan import plan_run

    one = plan_run({"shards": 1, "size": "1000MiB"}, "run-1", settings(tmp_path), LocalStorage())
    many = plan_run({"shards": 1000, "size": "1000MiB"}, "run-1", settings(tmp_path), LocalStorage())
    assert abs(json_size(many.model_dump()) - json_size(one.model_dump())) < 16


def test_a_task_parameter_the_api_does_not_have_fails_the_run(tmp_path, monkeypatch):
    from iotpipe.local import runner

    broken = tmp_path / "pipeline.asl.json"
    broken.write_text(DEFINITION.read_text().replace('"ActionOnFailure"', '"ActionOnFailur"'))
    monkeypatch.setattr(runner, "DEFINITION", broken)
    with LocalEngine(str(tmp_path / "lake"), settings(tmp_path / "lake"), customise=fake_processes) as engine:
        execution = engine.wait(engine.start({"generate": False}))
    failures = [e["taskFailedEventDetails"] for e in execution.history if e["type"] == "TaskFailed"]
    assert failures[0]["error"] == "States.Runtime" and "ActionOnFailur" in failures[0]["cause"]
    # Refused before the call, as the service refuses it: the step never ran, and the run reports that.
    assert not [call for call in execution.bindings.calls if call[0] == "emr.step"]
    assert "AssessStepFailure" in execution.entered_states() and execution.report is not None
