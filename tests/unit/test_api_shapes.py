"""Every Task state of the definition calls an API botocore knows, reads only fields of its response,
and has a TimeoutSeconds; a wrong parameter name or type is refused as the service would."""

from __future__ import annotations

import json

import pytest

from iotpipe.local.api_shapes import (
    InvalidParameters,
    check_parameters,
    check_response_path,
    integration_for,
    selector_paths,
)
from iotpipe.local.limits import function_limits
from iotpipe.local.runner import DEFINITION, FUNCTIONS


def task_states(states: dict | None = None) -> dict[str, dict]:
    states = json.loads(DEFINITION.read_text())["States"] if states is None else states
    tasks = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            tasks[name] = state
        if state["Type"] == "Map":
            tasks.update(task_states(state["ItemProcessor"]["States"]))
    return tasks


def test_every_task_calls_an_integration_with_an_api_model():
    for state in task_states().values():
        integration_for(state["Resource"])


def test_every_result_selector_and_output_path_reads_a_field_of_the_documented_response():
    checked = 0
    for state in task_states().values():
        (service, action), _ = integration_for(state["Resource"])
        paths = selector_paths(state.get("ResultSelector", {}))
        if state.get("OutputPath"):
            paths.append(state["OutputPath"])
        for path in paths:
            check_response_path(service, action, path)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("integration", "path"),
    [
        (("lambda", "invoke"), "$.Result"),
        (("elasticmapreduce", "createCluster"), "$.JobFlowId"),
        (("elasticmapreduce", "addStep"), "$.StepIds"),
        (("ecs", "runTask"), "$.Containers[0].ExitCodes"),
    ],
)
def test_a_path_the_response_does_not_have_is_refused(integration, path):
    with pytest.raises(InvalidParameters):
        check_response_path(*integration, path)


def test_paths_into_the_ecs_task_and_a_lambda_payload_are_accepted():
    check_response_path("ecs", "runTask", "$.Containers[0].ExitCode")
    check_response_path("lambda", "invoke", "$.Payload.anything.at.all")


def test_every_task_has_a_bounded_timeout_and_lambda_tasks_outlast_their_function():
    definition = json.loads(DEFINITION.read_text())
    assert 0 < definition["TimeoutSeconds"] <= 86400
    functions = function_limits()
    for name, state in task_states().items():
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
        placeholder = state.get("Parameters", {}).get("FunctionName", "")
        if placeholder:
            function = functions[FUNCTIONS[placeholder.strip("${}")]]
            assert function.timeout_seconds < state["TimeoutSeconds"] <= function.timeout_seconds + 60, name


STEP = {"Name": "s", "ActionOnFailure": "CONTINUE", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["a"]}}
ADD_STEP = {"ClusterId": "j-1", "Step": STEP}
JOB_RUN = {"ApplicationId": "00app", "ExecutionRoleArn": "arn:aws:iam::123456789012:role/job", "ClientToken": "t",
           "Name": "run-1", "ExecutionTimeoutMinutes": 240,
           "JobDriver": {"SparkSubmit": {"EntryPoint": "s3://a/job.py", "EntryPointArguments": ["--run-id", "r"],
                                         "SparkSubmitParameters": "--conf spark.jars=x.jar"}}}  # fmt: skip


def test_valid_requests_pass():
    check_parameters("elasticmapreduce", "addStep", ADD_STEP)
    check_parameters("elasticmapreduce", "terminateCluster", {"ClusterId": "j-1"})
    check_parameters("emr-serverless", "startJobRun", JOB_RUN)
    check_parameters("lambda", "invoke", {"FunctionName": "f", "Payload": {"a": 1}})
    check_parameters("states", "startExecution", {"StateMachineArn": "arn", "Name": "n", "Input": {"a": 1}})
    check_parameters("sns", "publish", {"TopicArn": "arn", "Subject": "s", "Message": "m"})
    check_parameters(
        "ecs",
        "runTask",
        {"Cluster": "c", "TaskDefinition": "t", "LaunchType": "FARGATE",
         "Overrides": {"ContainerOverrides": [{"Name": "g", "Command": ["a"]}]}},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("service", "action", "parameters"),
    [
        ("elasticmapreduce", "addStep", {**ADD_STEP, "Step": {**ADD_STEP["Step"], "ActionOnFailur": "CONTINUE"}}),
        ("elasticmapreduce", "addStep", {**ADD_STEP, "ClusterId": 7}),
        ("elasticmapreduce", "createCluster", {"Name": "n", "Instances": {}, "VisibleToAll": True}),
        ("ecs", "runTask", {"TaskDefinition": "t", "Overrides": {"ContainerOverrides": [{"Command": "not-a-list"}]}}),
        ("sns", "publish", {"Topic": "arn", "Message": "m"}),
        ("lambda", "invoke", {"Function": "f"}),
        ("states", "startExecution", {"StateMachineArn": "arn", "ExecutionName": "n"}),
        ("emr-serverless", "startJobRun", {k: v for k, v in JOB_RUN.items() if k != "ExecutionRoleArn"}),
        ("emr-serverless", "startJobRun", {**JOB_RUN, "ExecutionTimeoutMinutes": "240"}),
        ("emr-serverless", "startJobRun", {**JOB_RUN, "JobDriver": {"SparkSubmit": {"Entrypoint": "s3://a/job.py"}}}),
    ],
)
def test_a_wrong_parameter_name_or_type_is_refused(service, action, parameters):
    with pytest.raises(InvalidParameters):
        check_parameters(service, action, parameters)
