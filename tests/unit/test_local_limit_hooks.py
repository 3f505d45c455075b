"""The local bindings stop a Lambda at its template Timeout and MemorySize, and a Spark step at its
Task's TimeoutSeconds, with the errors AWS reports."""

from __future__ import annotations

import json
import sys
import time

import boto3
import pytest
from moto import mock_aws

from iotpipe.local import spark_submit
from iotpipe.local.bindings import Bindings, TaskError, bound
from iotpipe.local.limits import FunctionLimits


def bindings(limits: dict, **handlers) -> Bindings:
    return Bindings(
        lambda_handlers=handlers,
        run_generator=lambda c: 0,
        run_spark_step=lambda a, s: (True, {}),
        publish=lambda s, m: None,
        function_limits=limits,
    )


def test_a_lambda_running_past_its_timeout_fails_with_sandbox_timedout():
    local = bindings({"slow": FunctionLimits(timeout_seconds=1, memory_mb=1024)}, slow=lambda e, c: time.sleep(3))
    started = time.monotonic()
    with pytest.raises(TaskError) as caught:
        local.invoke_lambda({"FunctionName": "slow", "Payload": {}})
    assert time.monotonic() - started < 2.5
    assert caught.value.error == "Sandbox.Timedout"
    assert json.loads(caught.value.cause)["errorMessage"].endswith("Task timed out after 1.00 seconds")


def test_a_lambda_using_more_than_its_memory_size_fails_with_out_of_memory():
    def greedy(event, context):
        block = bytes(range(256)) * (64 * 2**20 // 256)  # 64 MiB, every page touched
        return {"bytes": len(block)}

    with pytest.raises(TaskError) as caught:
        bindings({"greedy": FunctionLimits(timeout_seconds=30, memory_mb=16)}, greedy=greedy).invoke_lambda(
            {"FunctionName": "greedy", "Payload": {}}
        )
    assert caught.value.error == "Runtime.OutOfMemory"
    result = bindings({"greedy": FunctionLimits(timeout_seconds=30, memory_mb=1024)}, greedy=greedy).invoke_lambda(
        {"FunctionName": "greedy", "Payload": {}}
    )
    assert result["Payload"] == {"bytes": 64 * 2**20}


def test_the_context_tells_the_handler_its_limits():
    seen = {}

    def handler(event, context):
        seen.update(memory=context.memory_limit_in_mb, remaining=context.get_remaining_time_in_millis())

    bindings({"f": FunctionLimits(timeout_seconds=7, memory_mb=256)}, f=handler).invoke_lambda({"FunctionName": "f"})
    assert seen["memory"] == 256 and 6000 < seen["remaining"] <= 7000


def test_an_sns_subject_aws_refuses_fails_the_publish():
    with pytest.raises(TaskError, match="ASCII"):
        bindings({}).publish_report({"TopicArn": "arn", "Subject": "run\nFAILED", "Message": "{}"})


def test_a_spark_submit_past_its_timeout_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(
        spark_submit,
        "submit_command",
        lambda argv, master, script: [sys.executable, "-c", "import time; time.sleep(60)"],
    )
    started = time.monotonic()
    result = spark_submit.run_spark_job(
        ["job.py", "--checkpoint", str(tmp_path), "--run-id", "r"], str(tmp_path / "log"), timeout=1
    )
    assert time.monotonic() - started < 10
    assert result.exit_code != 0 and not result.succeeded


def test_an_array_range_over_1000_items_fails_the_state_with_states_runtime(monkeypatch):
    """As on AWS: the intrinsic fails the Pass state that evaluates it, with States.Runtime."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    definition = {
        "StartAt": "Indexes",
        "States": {"Indexes": {"Type": "Pass", "Parameters": {"i.$": "States.ArrayRange(0, $.last, 1)"}, "End": True}},
    }
    outcomes = {}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), bound(bindings({})):
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(
            name="ranges", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/r"
        )["stateMachineArn"]
        for last in (999, 1000):
            execution = client.start_execution(
                stateMachineArn=arn, name=f"last-{last}", input=json.dumps({"last": last})
            )
            for _ in range(100):
                outcome = client.describe_execution(executionArn=execution["executionArn"])
                if outcome["status"] != "RUNNING":
                    break
                time.sleep(0.05)
            outcomes[last] = outcome
    assert outcomes[999]["status"] == "SUCCEEDED" and len(json.loads(outcomes[999]["output"])["i"]) == 1000
    assert outcomes[1000]["status"] == "FAILED" and outcomes[1000]["error"] == "States.Runtime"
    assert "makes 1001 items; the array can't contain more than 1000 items" in outcomes[1000]["cause"]
