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
| emr-serverless:startJobRun.sync               | the job run's spark-submit, run locally         |
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
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from iotpipe.local import limits
from iotpipe.local.api_shapes import InvalidParameters, check_parameters
from iotpipe.local.world import ACCOUNT, REGION

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

    timeout_seconds: float = 900.0
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_seconds - time.monotonic()) * 1000))


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
    function_limits: dict[str, limits.FunctionLimits] = field(default_factory=limits.function_limits)
    _task: threading.local = field(default_factory=threading.local)
    cluster_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    # EMR Serverless job runs by id: their state, and how the local engine stops one's process.
    job_runs: dict[str, str] = field(default_factory=dict)
    # StartJobRun is idempotent by ClientToken: the same token on the same application is the same
    # job run, however often it is asked for (and .sync waits for that job run's end again).
    job_runs_by_token: dict[tuple[str, str], tuple[dict, TaskError | None]] = field(default_factory=dict)
    stop_spark: Callable[[str], None] = lambda run_id: None
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

    def task_timeout(self) -> float | None:
        """The running Task state's TimeoutSeconds (on this thread), so a binding can stop its work."""
        return getattr(self._task, "timeout", None)

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
        function = self.function_limits.get(name)
        context = LocalLambdaContext(
            function_name=name,
            aws_request_id=f"local-{self._next_id()}",
            invoked_function_arn=parameters["FunctionName"],
        )
        if function:
            context.memory_limit_in_mb, context.timeout_seconds = function.memory_mb, function.timeout_seconds
        try:

            def as_the_function(event: dict, lambda_context: LocalLambdaContext) -> Any:
                with self.acting_as(name):  # entered in the thread that runs the handler
                    return handler(event, lambda_context)

            event = json.loads(json.dumps(payload, default=_iso))
            result = _within_function_limits(as_the_function, event, context, function)
        except limits.LimitExceeded as error:
            raise TaskError(error.error, json.dumps({"errorMessage": str(error), "errorType": error.error})) from None
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

    def start_job_run(self, parameters: dict) -> dict:
        """emr-serverless:startJobRun.sync: the job run's spark-submit, run locally. A job run that
        ends FAILED, or CANCELLED (cancelled, or past its ExecutionTimeoutMinutes), fails the
        state with the job run as its Cause; past the state's own timeout Step Functions cancels it."""
        token = (parameters["ApplicationId"], parameters.get("ClientToken", ""))
        if token[1] and token in self.job_runs_by_token:
            result, error = self.job_runs_by_token[token]
            self._record("emr-serverless.job-again", result["JobRunId"])
            if error:
                raise error
            return result
        try:
            result = self._start_job_run(parameters)
        except TaskError as error:
            self.job_runs_by_token[token] = (json.loads(error.cause), error)
            raise
        self.job_runs_by_token[token] = (result, None)
        return result

    def _start_job_run(self, parameters: dict) -> dict:
        application, name = parameters["ApplicationId"], parameters.get("Name", "")
        submit = parameters["JobDriver"]["SparkSubmit"]
        job_run_id = f"00local{self._next_id():010d}"
        arn = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/{application}/jobruns/{job_run_id}"
        job_run = {"ApplicationId": application, "JobRunId": job_run_id, "Name": name, "Arn": arn}
        problem = spark_submit_parameters_problem(submit.get("SparkSubmitParameters", ""))
        if problem:  # EMR Serverless accepts the job run, then fails it at submission
            self._record("emr-serverless.job", problem)
            raise TaskError("States.TaskFailed", json.dumps({**job_run, "State": "FAILED", "StateDetails": problem}))
        with self._lock:
            self.job_runs[job_run_id] = "RUNNING"
        self._record("emr-serverless.job", submit.get("EntryPointArguments", []))
        job_timeout = parameters.get("ExecutionTimeoutMinutes", 720) * 60
        self._task.timeout = min(self.task_timeout() or job_timeout, job_timeout)
        started = time.monotonic()
        succeeded, details = self.run_spark_step([submit["EntryPoint"], *submit.get("EntryPointArguments", [])],
                                                 job_run_id)  # fmt: skip
        with self._lock:
            cancelled = self.job_runs[job_run_id] == "CANCELLING"
            timed_out = not succeeded and time.monotonic() - started >= job_timeout
            state = "SUCCESS" if succeeded else "CANCELLED" if cancelled or timed_out else "FAILED"
            self.job_runs[job_run_id] = state
        if state == "SUCCESS":
            return {key: job_run[key] for key in ("ApplicationId", "JobRunId", "Arn")}
        if cancelled:
            reason = "Job run was cancelled."
        elif timed_out:
            reason = f"Job run timed out after {job_timeout // 60} minutes."
        else:
            reason = f"Job failed, please check complete logs. {details.get('Reason', '')}".strip()
        raise TaskError("States.TaskFailed", json.dumps({**job_run, "State": state, "StateDetails": reason}))

    def cancel_job_run(self, job_run_id: str) -> None:
        """CancelJobRun: the job run ends CANCELLED (an operator's cancel, as the console does it)."""
        with self._lock:
            if self.job_runs.get(job_run_id) != "RUNNING":
                return
            self.job_runs[job_run_id] = "CANCELLING"
        self._record("emr-serverless.cancel", job_run_id)
        self.stop_spark(job_run_id)

    def terminate_cluster(self, parameters: dict) -> dict:
        cluster_id = parameters["ClusterId"]
        with self._lock:
            self.clusters[cluster_id] = "TERMINATED"
        self._record("emr.terminate", cluster_id)
        return {}

    def publish_report(self, parameters: dict) -> dict:
        try:
            limits.check_sns_publish(parameters.get("Subject"), parameters.get("Message", ""))
        except limits.LimitExceeded as error:
            raise TaskError(error.error, str(error)) from None
        self._record("sns", parameters.get("Subject"))
        self.publish(parameters.get("Subject", ""), parameters.get("Message", ""))
        return {"MessageId": f"local-{self._next_id()}"}

    def start_execution(self, parameters: dict) -> dict:
        """A follow-up execution: recorded here, started by the local runner once this one ends."""
        problem = limits.execution_name_problem(parameters["Name"])
        if problem:
            raise TaskError("StepFunctions.InvalidNameException", f"Invalid Name: '{parameters['Name']}': {problem}")
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
            ("emr-serverless", "startJobRun"): self.start_job_run,
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
            _check_task_request(self.resource.service_name, self.resource.api_action, normalised_parameters)
            self.bindings.authorize(self.resource.service_name, self.resource.api_action,
                                    self.resource.condition, normalised_parameters)  # fmt: skip
            self.bindings._task.timeout = _timeout_seconds(self, env)
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
    restore_limits = _enforce_step_functions_limits()

    def service_for(service_name: str):
        state = (
            None
            if service_name in ("lambda", "ecs", "elasticmapreduce", "emr-serverless", "sns", "states")
            else original(service_name)
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
        restore_limits()


# spark-submit's options that take a value, as a job run's SparkSubmitParameters may hold them.
_SUBMIT_OPTIONS = ("--conf", "--py-files", "--jars", "--files", "--archives", "--class", "--name", "--packages",
                   "--driver-memory", "--driver-cores", "--executor-memory", "--executor-cores",
                   "--num-executors")  # fmt: skip


def spark_submit_parameters_problem(text: str) -> str:
    """What EMR Serverless would refuse in a job run's SparkSubmitParameters (split on spaces):
    an option spark-submit does not take, one without its value, a `--conf` that is no key=value."""
    tokens = text.split()
    for option, value in zip(tokens[::2], tokens[1::2] + [""] * (len(tokens) % 2)):
        if option not in _SUBMIT_OPTIONS:
            return f"Invalid SparkSubmitParameters: {option!r} is not a spark-submit option that takes a value"
        if not value or value.startswith("--"):
            return f"Invalid SparkSubmitParameters: {option} has no value"
        if option == "--conf" and "=" not in value.strip("="):
            return f"Invalid SparkSubmitParameters: --conf {value} is not key=value"
    return ""


def _iso(value: Any) -> str:
    """moto hands context values such as $$.Execution.StartTime over as datetimes; AWS sends ISO text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _check_task_request(service: str, action: str, parameters: dict) -> None:
    """What AWS checks before it calls the service: the state's input size after Parameters, the API shape."""
    try:
        limits.check_state_payload(parameters, f"{service}:{action}")
    except limits.LimitExceeded as error:
        raise TaskError(error.error, str(error)) from None
    try:
        check_parameters(service, action, parameters)
    except InvalidParameters as error:
        raise TaskError("States.Runtime", str(error)) from None


def _timeout_seconds(task, env) -> float | None:
    """The Task state's TimeoutSeconds (or TimeoutSecondsPath), as moto's engine evaluates it."""
    if task.timeout.is_default_value():
        return None
    task.timeout.eval(env=env)
    return env.stack.pop()


def _peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return None


def _reset_peak_rss() -> bool:
    """Linux resets the process's peak RSS (VmHWM) to its current RSS on this write."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


_memory_lock = threading.Lock()


def _within_function_limits(handler: Callable, event: dict, context: LocalLambdaContext, function) -> Any:
    """Call the handler as Lambda would: request and response within 6 MB, stopped at its Timeout,
    failed past its MemorySize.

    Memory is the peak RSS of this process during the call minus its RSS before: it counts native
    buffers (pyarrow, the JSON parser) that tracemalloc does not see, costs two small reads instead
    of tracing every allocation, and leaves out the interpreter and libraries already loaded, which
    Lambda counts too, so it is a lower bound of what Lambda would measure. Calls are serialised
    while measured, so one function's peak is not another's.
    """
    limits.check_lambda_payload(event, "request")
    if function is None:
        return handler(event, context)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = handler(event, context)
        except BaseException as error:  # handed back to the caller's thread
            outcome["error"] = error

    with _memory_lock:
        measured = _reset_peak_rss()
        before = _peak_rss_bytes() if measured else None
        worker = threading.Thread(target=call, daemon=True, name=f"lambda-{context.function_name}")
        worker.start()
        worker.join(function.timeout_seconds)
        peak = _peak_rss_bytes() if measured else None
    if worker.is_alive():
        raise limits.LimitExceeded(
            limits.LAMBDA_TIMEOUT_ERROR,
            f"RequestId: {context.aws_request_id} Error: Task timed out after {function.timeout_seconds:.2f} seconds",
        )
    if before is not None and peak is not None and peak - before > function.memory_mb * 2**20:
        raise limits.LimitExceeded(
            limits.LAMBDA_OUT_OF_MEMORY_ERROR,
            f"RequestId: {context.aws_request_id} Error: Runtime exited with error: signal: killed "
            f"({(peak - before) // 2**20} MiB over a MemorySize of {function.memory_mb} MB)",
        )
    if "error" in outcome:
        raise outcome["error"]
    limits.check_lambda_payload(outcome["result"], "response")
    return outcome["result"]


def _enforce_step_functions_limits() -> Callable[[], None]:
    """Patch moto's engine to measure payloads as AWS does, to let no `States.ALL` catch
    States.DataLimitExceeded, and to bound `States.ArrayRange` by iotpipe.local.limits (a failed
    intrinsic fails the state with States.Runtime); moto already fails a state whose output is too
    large. Returns the undo."""
    from moto.stepfunctions.exceptions import InvalidName
    from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl
    from moto.stepfunctions.parser.asl.component.intrinsic.function.statesfunction.array import array_range
    from moto.stepfunctions.parser.asl.component.state import state
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_lambda
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    undo = []

    def patch(owner, name, value):
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    for module in (state, state_task_lambda, state_task_service):
        patch(module, "is_within_size_quota", limits.is_within_state_payload)

    decl = error_equals_decl.ErrorEqualsDecl
    original_eval_body = decl._eval_body

    def eval_body(self, env):
        error_name = env.stack[-1]
        original_eval_body(self, env)
        if getattr(error_name, "error_name", None) in limits.UNCATCHABLE_BY_STATES_ALL and (
            decl._STATE_ALL_ERROR in self.error_names
        ):
            env.stack[-1] = False

    patch(decl, "_eval_body", eval_body)

    original_array_range = array_range.ArrayRange._eval_body

    def array_range_eval_body(self, env):
        self.argument_list.eval(env=env)
        arguments = env.stack.pop()
        if all(isinstance(value, (int, float)) for value in arguments):
            limits.check_array_range(*(round(value) for value in arguments))
        original_array_range(self, env)

    patch(array_range.ArrayRange, "_eval_body", array_range_eval_body)

    original_start = StepFunctionsParserBackend.start_execution

    def start_execution(self, state_machine_arn, name=None, *args, **kwargs):
        if name is not None:
            problem = limits.execution_name_problem(name)
            if problem:
                raise InvalidName(f"Invalid Name: '{name}': {problem}")
        return original_start(self, state_machine_arn, name, *args, **kwargs)

    patch(StepFunctionsParserBackend, "start_execution", start_execution)

    def restore() -> None:
        for owner, name, value in reversed(undo):
            setattr(owner, name, value)

    return restore
