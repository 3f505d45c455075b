"""`iotpipe run`: execute statemachine/pipeline.asl.json on this machine, through moto's ASL engine.

The lake folder mirrors the buckets (bronze/raw, gold/iot_transformed, gold/quarantine,
artifacts/...). The definition, the Lambda handlers, the generator and the Spark job are the
ones deployed to AWS; only the service integrations are bound to local counterparts
(iotpipe.local.bindings).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from iotpipe.local.bindings import Bindings, bound
from iotpipe.settings import Settings
from iotpipe.spark_submit import run_spark_job
from iotpipe.storage import LocalStorage, join

ROOT = Path(__file__).resolve().parent.parent.parent
DEFINITION = ROOT / "statemachine" / "pipeline.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTIONS = {
    "PlanRunFunctionArn": "plan_run",
    "AssessStepFailureFunctionArn": "assess_step_failure",
    "VerifyGoldFunctionArn": "verify_gold",
    "ReportStatusFunctionArn": "report_status",
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9:]+)\}")


def local_substitutions() -> dict[str, str]:
    """A value for every ${Placeholder} of the definition, as the template's DefinitionSubstitutions."""
    values = {key: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}" for key, name in FUNCTIONS.items()}
    values.update(
        {
            "Partition": "aws",
            "EcsClusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/iotpipe-local",
            "GeneratorTaskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/iotpipe-generator:1",
            "GeneratorContainerName": "generator",
            "SubnetId": "subnet-local",
            "GeneratorSecurityGroupId": "sg-local",
            "EmrReleaseLabel": "emr-7.10.0",
            "EmrServiceRole": "iotpipe-emr-service-role",
            "EmrInstanceProfile": "iotpipe-emr-instance-profile",
            "EmrLogUri": "s3://iotpipe-local-artifacts/emr-logs/",
            "ReportTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:iotpipe-reports",
        }
    )
    return values


def substitute(definition: str, values: dict[str, str]) -> str:
    missing = sorted(set(PLACEHOLDER.findall(definition)) - set(values))
    if missing:
        raise KeyError(f"no substitution for placeholders: {missing}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], definition)


def lambda_handlers() -> dict[str, Callable]:
    from functions.assess_step_failure.app import lambda_handler as assess
    from functions.plan_run.app import lambda_handler as plan
    from functions.report_status.app import lambda_handler as report
    from functions.verify_gold.app import lambda_handler as verify

    return {"plan_run": plan, "assess_step_failure": assess, "verify_gold": verify, "report_status": report}


@dataclass
class Execution:
    status: str
    output: dict | None
    error: str | None
    cause: str | None
    history: list[dict]
    bindings: Bindings
    seconds: float
    spark_logs: list[str] = field(default_factory=list)

    def state_output(self, state: str) -> dict | None:
        """The output of the last exit from `state`, from the history (also for FAILED executions)."""
        for event in reversed(self.history):
            details = event.get("stateExitedEventDetails")
            if details and details["name"] == state:
                return json.loads(details["output"])
        return None

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


def execute(
    lake: str,
    execution_input: dict,
    name: str | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    settings: Settings | None = None,
    spark_master: str = "local[*]",
    quiet_generator: bool = True,
    customise: Callable[[Bindings], None] | None = None,
) -> Execution:
    """Run one execution of the real definition against the lake folder; return its outcome."""
    _environment_for_local_lambdas()
    from moto import mock_aws

    from iotpipe import lambda_runtime

    lake = str(Path(lake).resolve())
    settings = settings or Settings.for_local_lake(lake, spark_job_uri=str(ROOT / "spark" / "job.py"))
    lambda_runtime.configure(settings, LocalStorage())
    emit = on_event or (lambda kind, detail: None)
    name = name or datetime.now(timezone.utc).strftime("run-%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:4]
    log_dir = join(lake, "artifacts", "logs")
    spark_logs: list[str] = []

    def run_generator(command: list[str]) -> int:
        emit("generator", {"command": command})
        output = subprocess.DEVNULL if quiet_generator else None
        code = subprocess.run([sys.executable, "-m", "iotpipe.cli", *command], stdout=output).returncode
        emit("generator-done", {"shard": command[command.index("--shard-index") + 1], "exit_code": code})
        return code

    def run_spark_step(args: list[str], step_id: str) -> tuple[bool, dict]:
        script = next(i for i, arg in enumerate(args) if arg.endswith("job.py"))
        log_path = join(log_dir, f"{name}-{step_id}.log")
        spark_logs.append(log_path)
        emit("spark", {"step_id": step_id, "log": log_path})
        result = run_spark_job(
            args[script + 1 :], log_path, on_progress=lambda p: emit("batch", p), master=spark_master
        )
        emit("spark-done", {"step_id": step_id, "exit_code": result.exit_code})
        # EMR's failure details are often no more than this; the assessment must not rely on them.
        return result.succeeded, {"Reason": "Unknown Error.", "LogFile": log_path}

    bindings = Bindings(
        lambda_handlers=lambda_handlers(),
        run_generator=run_generator,
        run_spark_step=run_spark_step,
        publish=lambda subject, message: emit("report", {"subject": subject, "message": message}),
    )
    if customise:
        customise(bindings)
    definition = substitute(DEFINITION.read_text(), local_substitutions())
    started = time.perf_counter()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), bound(bindings):
        import boto3

        client = boto3.client("stepfunctions", region_name=REGION)
        machine = client.create_state_machine(
            name="iotpipe-pipeline", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/iotpipe-local"
        )["stateMachineArn"]
        arn = client.start_execution(stateMachineArn=machine, name=name, input=json.dumps(execution_input))[
            "executionArn"
        ]
        seen = 0
        while True:
            description = client.describe_execution(executionArn=arn)
            history = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            for event in history[seen:]:
                _emit_state_event(event, emit)
            seen = len(history)
            if description["status"] != "RUNNING":
                break
            time.sleep(0.2)
    output = json.loads(description["output"]) if description.get("output") else None
    return Execution(
        status=description["status"],
        output=output,
        error=description.get("error"),
        cause=description.get("cause"),
        history=[_plain(e) for e in history],
        bindings=bindings,
        seconds=round(time.perf_counter() - started, 1),
        spark_logs=spark_logs,
    )


def _plain(event: dict) -> dict:
    return json.loads(json.dumps(event, default=str))


def _emit_state_event(event: dict, emit: Callable[[str, dict], None]) -> None:
    if "stateEnteredEventDetails" in event:
        emit("enter", {"state": event["stateEnteredEventDetails"]["name"]})
    elif "stateExitedEventDetails" in event:
        emit("exit", {"state": event["stateExitedEventDetails"]["name"]})
    elif event["type"] == "TaskFailed":
        details = event.get("taskFailedEventDetails", {})
        emit("task-failed", {"error": details.get("error"), "cause": (details.get("cause") or "")[:300]})
