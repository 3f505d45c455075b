"""Bind the state machine's service integrations to local counterparts, inside moto's ASL engine.

moto (with `execute_state_machine`) interprets `statemachine/pipeline.asl.json` itself: states,
Choice, Map, Retry, Catch, paths and intrinsics. What it cannot do here is reach the services
the Task states call, so each integration is bound to a local counterpart:

| ASL resource                                  | local counterpart                               |
| --------------------------------------------- | ----------------------------------------------- |
| lambda:invoke                                 | the same handler, called in-process             |
| ecs:runTask.sync                              | the container's command as a local process      |
| elasticmapreduce:createCluster.sync           | a recorded local "cluster" (no machines)        |
| elasticmapreduce:addStep.sync                 | the step's spark-submit, run locally            |
| elasticmapreduce:terminateCluster.sync        | the cluster recorded as terminated              |
| sns:publish                                   | the report handed to the terminal               |
| states:startExecution                         | a follow-up run, started once this one ends     |

A failure raises the same error name and Cause shape the real integration produces, so the
definition's Retry and Catch are exercised for real. Written against one moto version: the
engine's internals are not a public API, so any other version is refused.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

MOTO_VERSION = "5.2.5"


class UnsupportedMotoVersion(RuntimeError):
    pass


def check_moto_version(version: str | None = None) -> None:
    import moto

    found = version or moto.__version__
    if found != MOTO_VERSION:
        raise UnsupportedMotoVersion(
            f"the local state machine engine was written for moto {MOTO_VERSION}, found {found}: "
            f"install the pinned version (pip install moto=={MOTO_VERSION})"
        )


class TaskError(Exception):
    """A Task state failure with the error name and cause the real integration would report."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


@dataclass
class LocalLambdaContext:
    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = ""
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class Bindings:
    """The local counterparts; tests and the runner can observe what each was asked to do."""

    lambda_handlers: dict[str, Callable[[dict, Any], Any]]
    run_generator: Callable[[list[str]], int]
    run_spark_step: Callable[[list[str], str], tuple[bool, dict]]
    publish: Callable[[str, str], None]
    calls: list[tuple[str, Any]] = field(default_factory=list)
    follow_ups: list[dict] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)
    cluster_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    # IAM (iotpipe.local.iam): the role a function's calls are made with, and the state machine
    # role's check of each integration. The local engine sets both; the defaults enforce nothing.
    acting_as: Callable[[str], contextlib.AbstractContextManager] = lambda function_name: contextlib.nullcontext()
    authorize: Callable[[str, str, Any, dict], None] = lambda service, action, condition, parameters: None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, what: str, detail: Any) -> None:
        with self._lock:
            self.calls.append((what, detail))

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def invoke_lambda(self, parameters: dict) -> dict:
        name = (
            parameters["FunctionName"].rsplit(":", 1)[-1]
            if ":function:" not in parameters["FunctionName"]
            else (parameters["FunctionName"].split(":function:", 1)[1].split(":", 1)[0])
        )
        handler = self.lambda_handlers.get(name)
        if handler is None:
            raise TaskError("Lambda.ResourceNotFoundException", f"Function not found: {parameters['FunctionName']}")
        payload = parameters.get("Payload", {})
        if isinstance(payload, str):
            payload = json.loads(payload)
        self._record("lambda", name)
        context = LocalLambdaContext(
            function_name=name,
            aws_request_id=f"local-{self._next_id()}",
            invoked_function_arn=parameters["FunctionName"],
        )
        try:
            with self.acting_as(name):
                result = handler(json.loads(json.dumps(payload, default=_iso)), context)
        except Exception as error:  # a function error, reported as Lambda reports it
            error_type = type(error).__name__
            cause = {
                "errorMessage": str(error),
                "errorType": error_type,
                "stackTrace": traceback.format_exception(error)[-3:],
            }
            raise TaskError(error_type, json.dumps(cause)) from error
        return {"ExecutedVersion": "$LATEST", "Payload": json.loads(json.dumps(result)), "StatusCode": 200}

    def run_ecs_task(self, parameters: dict) -> dict:
        overrides = parameters.get("Overrides", {}).get("ContainerOverrides", [{}])
        command = overrides[0].get("Command", [])
        task_arn = f"arn:aws:ecs:local:000000000000:task/local/{self._next_id():08d}"
        self._record("ecs", command)
        exit_code = self.run_generator(command)
        task = {
            "TaskArn": task_arn,
            "LastStatus": "STOPPED",
            "StopCode": "EssentialContainerExited",
            "Containers": [{"Name": overrides[0].get("Name", "generator"), "ExitCode": exit_code}],
        }
        if exit_code != 0:
            raise TaskError("States.TaskFailed", json.dumps(task))
        return task

    def create_cluster(self, parameters: dict) -> dict:
        cluster_id = f"j-LOCAL{self._next_id():06d}"
        with self._lock:
            self.clusters[cluster_id] = "WAITING"
            self.cluster_tags[cluster_id] = {t["Key"]: t["Value"] for t in parameters.get("Tags", [])}
        self._record("emr.create", cluster_id)
        return {
            "ClusterId": cluster_id,
            "ClusterArn": f"arn:aws:elasticmapreduce:local:000000000000:cluster/{cluster_id}",
        }

    def add_step(self, parameters: dict) -> dict:
        cluster_id = parameters["ClusterId"]
        if self.clusters.get(cluster_id, "WAITING") != "WAITING":
            raise TaskError("EMR.InvalidRequestException", f"cluster {cluster_id} is {self.clusters[cluster_id]}")
        step = parameters["Step"]
        step_id = f"s-LOCAL{self._next_id():06d}"
        self._record("emr.step", step["HadoopJarStep"]["Args"])
        succeeded, failure_details = self.run_spark_step(step["HadoopJarStep"]["Args"], step_id)
        if succeeded:
            return {"StepId": step_id}
        cause = {
            "Step": {
                "Id": step_id,
                "Name": step.get("Name"),
                "Status": {"State": "FAILED", "FailureDetails": failure_details},
            }
        }
        raise TaskError("States.TaskFailed", json.dumps(cause))

    def terminate_cluster(self, parameters: dict) -> dict:
        cluster_id = parameters["ClusterId"]
        with self._lock:
            self.clusters[cluster_id] = "TERMINATED"
        self._record("emr.terminate", cluster_id)
        return {}

    def publish_report(self, parameters: dict) -> dict:
        self._record("sns", parameters.get("Subject"))
        self.publish(parameters.get("Subject", ""), parameters.get("Message", ""))
        return {"MessageId": f"local-{self._next_id()}"}

    def start_execution(self, parameters: dict) -> dict:
        """A follow-up execution: recorded here, started by the local runner once this one ends."""
        self._record("sfn.start", parameters["Name"])
        self.follow_ups.append({"name": parameters["Name"], "input": parameters.get("Input", {})})
        return {"ExecutionArn": f"{parameters['StateMachineArn']}:{parameters['Name']}", "StartDate": "local"}

    def dispatch(self, service: str, action: str) -> Callable[[dict], dict] | None:
        return {
            ("lambda", "invoke"): self.invoke_lambda,
            ("ecs", "runTask"): self.run_ecs_task,
            ("elasticmapreduce", "createCluster"): self.create_cluster,
            ("elasticmapreduce", "addStep"): self.add_step,
            ("elasticmapreduce", "terminateCluster"): self.terminate_cluster,
            ("sns", "publish"): self.publish_report,
            ("states", "startExecution"): self.start_execution,
        }.get((service, action))


def _local_service_class():
    """A moto StateTaskService whose service call is one of our bindings (built lazily: moto internals)."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    class LocalServiceTask(StateTaskService):
        bindings: Bindings

        def _get_supported_parameters(self):
            return set()  # accept every parameter as written in the definition

        def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
            binding = self.bindings.dispatch(self.resource.service_name, self.resource.api_action)
            if binding is None:
                raise TaskError("States.Runtime", f"no local binding for {self.resource.resource_arn}")
            self.bindings.authorize(self.resource.service_name, self.resource.api_action,
                                    self.resource.condition, normalised_parameters)  # fmt: skip
            env.stack.append(binding(normalised_parameters))

        def _from_error(self, env, ex):
            if not isinstance(ex, TaskError):
                return super()._from_error(env, ex)
            return FailureEvent(
                env=env,
                error_name=StatesErrorName.from_name(ex.error)
                if ex.error.startswith("States.")
                else CustomErrorName(ex.error),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=ex.error,
                        cause=ex.cause,
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )

    return LocalServiceTask


@contextlib.contextmanager
def bound(bindings: Bindings) -> Iterator[Bindings]:
    """Within this block, moto's engine sends the definition's Task states to `bindings`."""
    check_moto_version()
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    local_class = _local_service_class()
    original = state_task_factory.state_task_service_for

    def service_for(service_name: str):
        state = (
            None if service_name in ("lambda", "ecs", "elasticmapreduce", "sns", "states") else original(service_name)
        )
        if state is not None:
            return state
        task = local_class()
        task.bindings = bindings
        return task

    state_task_factory.state_task_service_for = service_for
    try:
        yield bindings
    finally:
        state_task_factory.state_task_service_for = original


def _iso(value: Any) -> str:
    """moto hands context values such as $$.Execution.StartTime over as datetimes; AWS sends ISO text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
