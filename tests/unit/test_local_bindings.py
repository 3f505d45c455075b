"""The local bindings: version guard, Lambda error shape, and the definition's placeholders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from iotpipe.local.bindings import Bindings, TaskError, UnsupportedMotoVersion, check_moto_version
from iotpipe.local.runner import DEFINITION, PLACEHOLDER, local_substitutions, substitute

ROOT = Path(__file__).resolve().parent.parent.parent


def bindings(**handlers) -> Bindings:
    return Bindings(
        lambda_handlers=handlers,
        run_generator=lambda c: 0,
        run_spark_step=lambda a, s: (True, {}),
        publish=lambda s, m: None,
    )


def test_the_engine_refuses_a_moto_version_it_was_not_written_for():
    check_moto_version()
    with pytest.raises(UnsupportedMotoVersion, match="5.2.5"):
        check_moto_version("5.3.0")


def test_a_lambda_result_comes_back_as_lambda_invoke_does():
    local = bindings(plan=lambda event, context: {"echo": event["x"], "fn": context.function_name})
    result = local.invoke_lambda({"FunctionName": "arn:aws:lambda:us-east-1:1:function:plan", "Payload": {"x": 1}})
    assert result["StatusCode"] == 200 and result["Payload"] == {"echo": 1, "fn": "plan"}


def test_a_lambda_exception_becomes_its_error_type_with_a_lambda_shaped_cause():
    def handler(event, context):
        raise KeyError("missing")

    with pytest.raises(TaskError) as caught:
        bindings(plan=handler).invoke_lambda({"FunctionName": "plan", "Payload": {}})
    assert caught.value.error == "KeyError"
    assert json.loads(caught.value.cause)["errorType"] == "KeyError"


def test_a_failed_container_fails_the_ecs_task():
    local = Bindings(
        lambda_handlers={}, run_generator=lambda c: 3, run_spark_step=lambda a, s: (True, {}), publish=lambda s, m: None
    )
    with pytest.raises(TaskError, match="ExitCode"):
        local.run_ecs_task({"Overrides": {"ContainerOverrides": [{"Name": "generator", "Command": ["generate"]}]}})


def test_a_failed_step_reports_emr_shaped_failure_details():
    local = Bindings(
        lambda_handlers={},
        run_generator=lambda c: 0,
        run_spark_step=lambda a, s: (False, {"Reason": "Unknown Error."}),
        publish=lambda s, m: None,
    )
    with pytest.raises(TaskError) as caught:
        local.add_step({"ClusterId": "j-1", "Step": {"Name": "x", "HadoopJarStep": {"Args": ["spark-submit"]}}})
    assert json.loads(caught.value.cause)["Step"]["Status"]["FailureDetails"] == {"Reason": "Unknown Error."}


def _template_substitutions() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    return set(template["Resources"]["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"])


def test_every_placeholder_of_the_definition_has_a_substitution_in_the_template_and_locally():
    placeholders = set(PLACEHOLDER.findall(DEFINITION.read_text()))
    assert placeholders
    assert placeholders - _template_substitutions() == set()
    assert placeholders - set(local_substitutions()) == set()
    assert not re.search(r"\$\{", substitute(DEFINITION.read_text(), local_substitutions()))


def test_a_missing_substitution_is_refused():
    with pytest.raises(KeyError, match="Nope"):
        substitute('{"a": "${Nope}"}', {})


# ---------------------------------------------------------------- emr-serverless:startJobRun.sync
JOB_RUN = {"ApplicationId": "00app", "Name": "run-1-attempt-1", "ExecutionTimeoutMinutes": 5,
           "JobDriver": {"SparkSubmit": {"EntryPoint": "spark/job.py", "EntryPointArguments": ["--run-id", "r"],
                                         "SparkSubmitParameters": "--conf spark.jars=x.jar"}}}  # fmt: skip


def job_run_bindings(outcome) -> Bindings:
    local = bindings()
    local.run_spark_step = outcome
    return local


def failure_of(local: Bindings, parameters: dict = JOB_RUN) -> dict:
    with pytest.raises(TaskError) as caught:
        local.start_job_run(parameters)
    assert caught.value.error == "States.TaskFailed"
    return json.loads(caught.value.cause)


def test_a_job_run_runs_its_entry_point_and_arguments_and_returns_its_ids():
    ran = []
    local = job_run_bindings(lambda args, job_run_id: ran.append((args, job_run_id)) or (True, {}))
    result = local.start_job_run(JOB_RUN)
    assert ran == [(["spark/job.py", "--run-id", "r"], result["JobRunId"])]
    assert result["Arn"].endswith(f":/applications/00app/jobruns/{result['JobRunId']}")
    assert local.job_runs == {result["JobRunId"]: "SUCCESS"} and re.fullmatch(r"[0-9a-z]+", result["JobRunId"])


def test_a_failed_job_run_fails_the_state_with_the_job_run_as_its_cause():
    cause = failure_of(job_run_bindings(lambda args, job_run_id: (False, {"Reason": "exit 1"})))
    assert cause["State"] == "FAILED" and cause["ApplicationId"] == "00app" and "exit 1" in cause["StateDetails"]


def test_a_cancelled_job_run_ends_cancelled():
    local = bindings()

    def cancelled_while_running(args, job_run_id):
        local.cancel_job_run(job_run_id)
        return False, {}

    local.run_spark_step = cancelled_while_running
    stopped = []
    local.stop_spark = stopped.append
    cause = failure_of(local)
    assert cause["State"] == "CANCELLED" and stopped == [cause["JobRunId"]]
    assert ("emr-serverless.cancel", cause["JobRunId"]) in local.calls


def test_a_job_run_past_its_execution_timeout_is_cancelled_at_that_timeout(monkeypatch):
    local = bindings()
    seen = []

    def past_its_timeout(args, job_run_id):
        seen.append(local.task_timeout())
        return False, {}

    local.run_spark_step = past_its_timeout
    local._task.timeout = 3600.0  # the state's own timeout is longer
    clock = iter([0.0, 301.0])  # the job run's start, and its end past 5 minutes
    monkeypatch.setattr("iotpipe.local.bindings.time.monotonic", lambda: next(clock))
    cause = failure_of(local, {**JOB_RUN, "ExecutionTimeoutMinutes": 5})
    assert seen == [300] and cause["State"] == "CANCELLED" and "timed out" in cause["StateDetails"]


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ("--conf spark.jars=/a b.jar", "'b.jar' is not a spark-submit option"),
        ("--conf spark.jars", "--conf spark.jars is not key=value"),
        ("--conf", "--conf has no value"),
        ("--verbose --conf a=b", "'--verbose' is not a spark-submit option"),
    ],
)
def test_spark_submit_parameters_emr_serverless_would_refuse_fail_the_job_run(parameters, problem):
    local = job_run_bindings(lambda args, job_run_id: pytest.fail("a refused job run does not run"))
    driver = {"SparkSubmit": {**JOB_RUN["JobDriver"]["SparkSubmit"], "SparkSubmitParameters": parameters}}
    cause = failure_of(local, {**JOB_RUN, "JobDriver": driver})
    assert cause["State"] == "FAILED" and problem in cause["StateDetails"]


def test_a_job_run_asked_for_again_with_its_client_token_is_the_same_job_run_not_a_new_one():
    """StartJobRun is idempotent by ClientToken (as AWS documents it): a token used again returns
    the first job run, finished or not, and starts nothing."""
    ran = []
    local = job_run_bindings(lambda args, job_run_id: ran.append(job_run_id) or (True, {}))
    first = local.start_job_run({**JOB_RUN, "ClientToken": "t-1"})
    assert local.start_job_run({**JOB_RUN, "ClientToken": "t-1"}) == first and len(ran) == 1
    assert local.start_job_run({**JOB_RUN, "ClientToken": "t-2"}) != first and len(ran) == 2
    failing = job_run_bindings(lambda args, job_run_id: ran.append(job_run_id) or (False, {"Reason": "exit 1"}))
    again = [failure_of(failing, {**JOB_RUN, "ClientToken": "t-3"}) for _ in range(2)]
    assert again[0] == again[1] and len(ran) == 3


def _states(definition: dict):
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []) + [state.get("ItemProcessor") or state.get("Iterator") or {}]:
            if branch:
                yield from _states(branch)


def test_every_job_run_the_definition_starts_has_a_token_of_its_own_per_attempt_and_drain_round():
    """A drain round reaches the job run states again: a token fixed per execution would get the
    first round's finished job run back, and the round would do nothing."""
    definition = json.loads(DEFINITION.read_text())
    tokens = {name: state["Parameters"]["ClientToken.$"] for name, state in _states(definition)
              if state.get("Resource", "").endswith("emr-serverless:startJobRun.sync")}  # fmt: skip
    assert set(tokens) == {"RunSparkJobRun", "MaintainTablesJobRun"}
    for name, token in tokens.items():
        assert "$.attempt." in token or "$.drain.round" in token, f"{name}: {token}"
