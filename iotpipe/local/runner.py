"""`iotpipe run`: execute statemachine/pipeline.asl.json on this machine, through moto's ASL engine.

The lake folder mirrors the buckets (bronze/raw, gold/iot_transformed, gold/quarantine,
artifacts/...). The definition, the Lambda handlers, the generator and the Spark job are the
ones deployed to AWS; only the service integrations are bound to local counterparts
(iotpipe.local.bindings).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from generator.shards import GENERATOR_PROGRESS_ENV, GENERATOR_PROGRESS_PREFIX
from iotpipe.lake.storage import LocalStorage, join
from iotpipe.local.bindings import Bindings, bound
from iotpipe.local.jars import EMR_RELEASE
from iotpipe.local.spark_submit import SPARK_DIR, run_spark_job
from iotpipe.local.world import ACCOUNT, FUNCTIONS, REGION
from iotpipe.run.models import EMR_ON_EC2
from iotpipe.run.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
DEFINITION = ROOT / "statemachine" / "pipeline.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9:]+)\}")


def local_substitutions(spark_runtime: str = EMR_ON_EC2) -> dict[str, str]:
    """A value for every ${Placeholder} of the definition, as the template's DefinitionSubstitutions
    for that runtime (the other runtime's resources do not exist: their placeholders say `none`)."""
    on_ec2 = spark_runtime == EMR_ON_EC2
    values = {key: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" for key, name in FUNCTIONS.items()}
    values.update(
        {
            "Partition": "aws",
            "EcsClusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/iotpipe-local",
            "GeneratorTaskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/iotpipe-generator:1",
            "GeneratorContainerName": "generator",
            "SubnetId": "subnet-local",
            "GeneratorSecurityGroupId": "sg-local",
            "EmrReleaseLabel": EMR_RELEASE,
            "EmrServiceRole": "iotpipe-emr-service-role" if on_ec2 else "none",
            "EmrInstanceProfile": "iotpipe-emr-instance-profile" if on_ec2 else "none",
            "EmrLogUri": "s3://iotpipe-local-artifacts/emr-logs/",
            "EmrSecurityConfiguration": "iotpipe-EmrSecurityConfiguration" if on_ec2 else "none",
            "SparkApplicationId": "none" if on_ec2 else "00localsparkapp",
            "SparkJobRoleArn": "none" if on_ec2 else f"arn:aws:iam::{ACCOUNT}:role/iotpipe-SparkJobRole",
            # Not run locally (the local cluster is a record), but rendered and shape-checked.
            "EmrBootstrapScriptUri": "s3://iotpipe-local-artifacts/spark/bootstrap/install-job-dependencies.sh",
            "EmrWheelhouseUri": "s3://iotpipe-local-artifacts/spark/wheels/",
            "GeneratorAssignPublicIp": "DISABLED",
            "ReportTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:iotpipe-reports",
            "StackName": "iotpipe",
        }
    )
    return values


def substitute(definition: str, values: dict[str, str]) -> str:
    missing = sorted(set(PLACEHOLDER.findall(definition)) - set(values))
    if missing:
        raise KeyError(f"no substitution for placeholders: {missing}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], definition)


def lambda_handlers() -> dict[str, Callable]:
    from functions.acquire_lease.app import lambda_handler as acquire
    from functions.assess_step_failure.app import lambda_handler as assess
    from functions.plan_run.app import lambda_handler as plan
    from functions.release_lease.app import lambda_handler as release
    from functions.report_status.app import lambda_handler as report
    from functions.verify_gold.app import lambda_handler as verify

    return {
        "plan_run": plan,
        "assess_step_failure": assess,
        "verify_gold": verify,
        "report_status": report,
        "acquire_lease": acquire,
        "release_lease": release,
    }


@dataclass
class Execution:
    status: str
    output: dict | None
    error: str | None
    cause: str | None
    history: list[dict]
    bindings: Bindings
    seconds: float

    def state_output(self, state: str) -> dict | None:
        """The output of the last exit from `state`, from the history (also for FAILED executions)."""
        for event in reversed(self.history):
            details = event.get("stateExitedEventDetails")
            if details and details["name"] == state:
                return json.loads(details["output"])
        return None

    @property
    def failure(self) -> dict | None:
        """`{"Error", "Cause"}` of a failed execution, as Step Functions reports it; None otherwise."""
        return {"Error": self.error, "Cause": self.cause} if self.error else None

    @property
    def report(self) -> dict | None:
        """The run report ReportStatus produced."""
        output = self.state_output("ReportStatus")
        return output["report"]["report"] if output else None

    def entered_states(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]


def _environment_for_local_lambdas() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    # moto logs every failed task with its whole parse tree; failures reach the user as events instead.
    logging.getLogger("moto").setLevel(logging.CRITICAL)


class LocalEngine:
    """The real definition on moto's engine, bound to local counterparts, for one or more executions."""

    def __init__(
        self,
        lake: str,
        settings: Settings | None = None,
        on_event: Callable[[str, dict], None] | None = None,
        spark_master: str = "local[*]",
        quiet_generator: bool = True,
        customise: Callable[[Bindings], None] | None = None,
        overrides: dict | None = None,
    ) -> None:
        _environment_for_local_lambdas()  # before the handlers (and their Powertools Logger) are imported
        self.lake = str(Path(lake).resolve())
        self.settings = settings or Settings.for_local_lake(
            self.lake, spark_job_uri=str(ROOT / "spark" / "job.py"), **(overrides or {})
        )
        self.emit = on_event or (lambda kind, detail: None)
        self.spark_master = spark_master
        self.quiet_generator = quiet_generator
        self.bindings = Bindings(
            lambda_handlers=lambda_handlers(),
            run_generator=self._run_generator,
            run_spark_step=self._run_spark_step,
            publish=lambda subject, message: self.emit("report", {"subject": subject, "message": message}),
        )
        if customise:
            customise(self.bindings)
        self._stack = contextlib.ExitStack()
        # For ending a run on a signal (iotpipe.local.interrupt): the execution being waited for,
        # the processes it started, and a flag that starts no more of them.
        self.current: str | None = None
        self.stopping = threading.Event()
        # State events are emitted by whichever thread looks first (the waiting one, or a local
        # task as it starts), so a task's own lines follow the line of the state that runs it.
        self._seen_events = 0
        self._seen_lock = threading.Lock()
        self._children: set[subprocess.Popen] = set()
        self._children_lock = threading.Lock()
        self._spark_runs: dict[str, subprocess.Popen] = {}  # an EMR step's or job run's spark-submit
        self.bindings.stop_spark = self.stop_spark

    def __enter__(self) -> LocalEngine:
        from moto import mock_aws

        from iotpipe.local import iam
        from iotpipe.run import lambda_runtime
        from iotpipe.run.lease_store import lease_store_for

        # Every Lambda's calls run with its role's permissions, every integration with the state machine role's.
        stack = iam.load_stack(world=iam.local_world(self.settings.spark_runtime))
        storage, leases, authorizer = iam.authorized_runtime(stack, self.lake, LocalStorage(),
                                                             lease_store_for(self.settings.lease_store))  # fmt: skip
        lambda_runtime.configure(self.settings, storage, leases)
        self.bindings.acting_as = lambda name: iam.acting_as(stack.logical_id_of_function(name))
        self.bindings.authorize = iam.IntegrationAuthorizer(stack, self.bindings.cluster_tags.get).check
        self._stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        self._stack.enter_context(bound(self.bindings))
        import boto3

        self.client = boto3.client("stepfunctions", region_name=REGION)
        self._lambda_clients(authorizer)
        definition = substitute(DEFINITION.read_text(), local_substitutions(self.settings.spark_runtime))
        self.machine = self.client.create_state_machine(
            name="iotpipe-pipeline", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/iotpipe-local"
        )["stateMachineArn"]
        return self

    def _lambda_clients(self, authorizer) -> None:
        """The Lambdas' AWS clients, each call checked against the function's role: the catalog
        (GetTable, answered from the local Iceberg catalog) and Step Functions (moto's)."""
        from iotpipe.lake.tables import sqlite_path
        from iotpipe.local import iam
        from iotpipe.local.catalog import LocalGlue
        from iotpipe.run import lambda_runtime

        glue = LocalGlue(sqlite_path(self.settings.catalog_uri) or "")
        lambda_runtime.clients["glue"] = iam.AuthorizedGlue(glue, authorizer)
        lambda_runtime.clients["stepfunctions"] = iam.AuthorizedStepFunctions(self.client, authorizer)
        for service in ("glue", "stepfunctions"):
            self._stack.callback(lambda_runtime.clients.pop, service, None)

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _run_generator(self, command: list[str]) -> int:
        """The shard's container command as a process; its progress lines become events."""
        shard = command[command.index("--shard-index") + 1]
        if self.stopping.is_set():
            return 130
        self._emit_new_states()
        self.emit("generator", {"command": command, "shard": shard})
        env = {**os.environ, GENERATOR_PROGRESS_ENV: "json"}
        with subprocess.Popen([sys.executable, "-m", "iotpipe.cli", *command], stdout=subprocess.PIPE, env=env,
                              text=True, start_new_session=True) as process:  # fmt: skip
            self._started(process)
            for line in process.stdout:
                if line.startswith(GENERATOR_PROGRESS_PREFIX):
                    self.emit("generator-progress", json.loads(line[len(GENERATOR_PROGRESS_PREFIX) :]))
                elif not self.quiet_generator:
                    sys.stdout.write(line)
            code = process.wait()
            self._ended(process)
        self.emit("generator-done", {"shard": shard, "exit_code": code})
        return code

    def _started(self, process: subprocess.Popen, spark_run: str | None = None) -> None:
        with self._children_lock:
            self._children.add(process)
            if spark_run:
                self._spark_runs[spark_run] = process
        if self.stopping.is_set():  # stopped while it started
            self.stop_children()

    def _ended(self, process: subprocess.Popen) -> None:
        with self._children_lock:
            self._children.discard(process)

    def stop_spark(self, spark_run: str) -> None:
        """Stop one step's or job run's spark-submit, as EMR cancels it (CancelSteps, CancelJobRun)."""
        with self._children_lock:
            process = self._spark_runs.get(spark_run)
        if process is not None:
            _signal_group(process, signal.SIGTERM)

    def stop_children(self, grace_seconds: float = 15.0) -> None:
        """Stop every process the run started and wait for it: SIGTERM to its process group (each
        leads one: Spark's JVM with its Python driver, a generator shard), SIGKILL after the grace."""
        with self._children_lock:
            children = list(self._children)
        for process in children:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for process in children:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()

    def _run_spark_step(self, args: list[str], step_id: str) -> tuple[bool, dict]:
        if self.stopping.is_set():
            return False, {"Reason": "the run was interrupted"}
        script = next(i for i, arg in enumerate(args) if arg.endswith(("job.py", "maintain.py")))
        run_id = args[args.index("--run-id") + 1]
        log_path = join(self.lake, "artifacts", "logs", f"{run_id}-{step_id}.log")
        self._emit_new_states()
        self.emit("spark", {"step_id": step_id, "log": log_path})
        result = run_spark_job(args[script + 1 :], log_path, on_progress=lambda p: self.emit("batch", p),
                               master=self.spark_master, timeout=self.bindings.task_timeout(),
                               on_tasks=lambda t: self.emit("spark-tasks", {**t, "step_id": step_id}),
                               script=SPARK_DIR / Path(args[script]).name,
                               on_start=lambda process: self._started(process, step_id))  # fmt: skip
        with self._children_lock:
            self._children = {p for p in self._children if p.poll() is None}
        self.emit("spark-done", {"step_id": step_id, "exit_code": result.exit_code})
        # EMR's failure details are often no more than this; the assessment must not rely on them.
        return result.succeeded, {"Reason": "Unknown Error.", "LogFile": log_path}

    def start(self, execution_input: object, name: str | None = None) -> str:
        name = name or datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:4]
        return self.client.start_execution(stateMachineArn=self.machine, name=name, input=json.dumps(execution_input))[
            "executionArn"
        ]

    def _emit_new_states(self) -> list[dict]:
        """Emit the state events of the current execution not emitted yet; return its history."""
        arn = self.current
        if arn is None:
            return []
        with self._seen_lock:
            history = self.client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            for event in history[self._seen_events :]:
                _emit_state_event(event, self.emit)
            self._seen_events = len(history)
        return history

    def wait(self, arn: str) -> Execution:
        started = time.perf_counter()
        with self._seen_lock:
            self.current, self._seen_events = arn, 0
        while True:
            description = self.client.describe_execution(executionArn=arn)
            history = self._emit_new_states()
            if description["status"] != "RUNNING":
                break
            time.sleep(0.2)
        with self._seen_lock:
            self.current = None
        output = json.loads(description["output"]) if description.get("output") else None
        return Execution(
            status=description["status"],
            output=output,
            error=description.get("error"),
            cause=description.get("cause"),
            history=[_plain(e) for e in history],
            bindings=self.bindings,
            seconds=round(time.perf_counter() - started, 1),
        )

    def run(self, execution_input: object, name: str | None = None) -> list[Execution]:
        """One execution, then the follow-up executions it asked for, in order."""
        executions = [self.wait(self.start(execution_input, name))]
        while self.bindings.follow_ups:
            follow_up = self.bindings.follow_ups.pop(0)
            self.emit("follow-up", {"name": follow_up["name"]})
            executions.append(self.wait(self.start(follow_up["input"], follow_up["name"])))
        return executions


def execute(
    lake: str,
    execution_input: object,
    name: str | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    settings: Settings | None = None,
    spark_master: str = "local[*]",
    quiet_generator: bool = True,
    customise: Callable[[Bindings], None] | None = None,
) -> Execution:
    """Run one execution of the real definition against the lake folder; return its outcome."""
    with LocalEngine(lake, settings, on_event, spark_master, quiet_generator, customise) as engine:
        return engine.wait(engine.start(execution_input, name))


def _signal_group(process: subprocess.Popen, number: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, number)


def _plain(event: dict) -> dict:
    return json.loads(json.dumps(event, default=str))


def _emit_state_event(event: dict, emit: Callable[[str, dict], None]) -> None:
    if "stateEnteredEventDetails" in event:
        emit("enter", {"state": event["stateEnteredEventDetails"]["name"], "type": event["type"]})
    elif "stateExitedEventDetails" in event:
        emit("exit", {"state": event["stateExitedEventDetails"]["name"]})
    elif event["type"] == "TaskFailed":
        details = event.get("taskFailedEventDetails", {})
        emit("task-failed", {"error": details.get("error"), "cause": (details.get("cause") or "")[:300]})
