"""Each Lambda's real logic, run under the IAM its role has in template.yaml, on a small synthetic
lake (Spark's checkpoint, sink logs and Parquet written by the test, no Spark); and every
integration of the state machine, checked against the state machine role.

The mutation matrix removes one function's `Policies` (or one state machine statement) from a
copy of the template: the rehearsal must then deny that principal's calls.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iotpipe import lambda_runtime
from iotpipe.lease import FileLeaseStore
from iotpipe.local import iam
from iotpipe.local.bindings import Bindings, TaskError
from iotpipe.local.iam.enforce import AuthorizedStepFunctions, Authorizer, IntegrationAuthorizer
from iotpipe.local.iam.stack import TEMPLATE, parse_template
from iotpipe.local.runner import DEFINITION, lambda_handlers, local_substitutions, substitute
from iotpipe.settings import Settings
from iotpipe.storage import LocalStorage

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:iotpipe-pipeline:run-1"
FUNCTIONS = ("PlanRunFunction", "AcquireLeaseFunction", "VerifyGoldFunction", "AssessStepFailureFunction",
             "ReleaseLeaseFunction", "ReportStatusFunction", "StartFromBronzeEventsFunction")  # fmt: skip


@pytest.fixture(scope="module")
def stack():
    return iam.load_stack()


# ---------------------------------------------------------------- a synthetic lake, no Spark
def log_file(path: Path, entries: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("v1\n" + "".join(json.dumps(e) + "\n" for e in entries))


def parquet(path: Path, rows: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_id": [f"e{i}" for i in range(rows)]}), path)
    return path.stat().st_size


ATTEMPT = "run-1-attempt-1"


def bronze(lake: Path) -> Path:
    source = lake / "bronze" / "raw" / "seed-1" / "part-00001.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text('{"event_id": "e0"}\n')
    return source


def spark_batch(lake: Path, source: Path) -> None:
    """What one committed micro-batch of the job leaves behind, plus one stray uncommitted file."""
    checkpoint = lake / "artifacts" / "checkpoints" / "bronze-to-gold"
    query = checkpoint / "transform"
    log_file(query / "offsets" / "0", [{"batchWatermarkMs": 0}])
    log_file(query / "commits" / "0", [{"nextBatchWatermarkMs": 0}])
    log_file(query / "sources" / "0" / "0", [{"path": f"file://{source}", "batchId": 0}])
    planned_at = time.time() - 60  # the batch was planned a minute before its files were written
    os.utime(query / "offsets" / "0", (planned_at, planned_at))
    gold = lake / "gold" / "iot_transformed"
    data = gold / "date=2024-01-01" / "location_city=Oslo" / "part-00000.parquet"
    size = parquet(data, 2)
    # A replay of a batch a crashed attempt left uncommitted: VerifyGold looks for its strays.
    ledger = {"query": "gold", "batch": 0, "input_rows": 2, "observed": {"valid": {"rows": 2}}, "ms": 5,
              "replay": True, "files": [{"path": f"file://{data}", "size": size}]}  # fmt: skip
    (checkpoint / "ledger" / "gold").mkdir(parents=True)
    (checkpoint / "ledger" / "gold" / "0.json").write_text(json.dumps(ledger))
    rejected = {"query": "quarantine", "batch": 0, "input_rows": 2, "observed": {}, "ms": 5, "replay": True,
                "files": []}  # fmt: skip
    (checkpoint / "ledger" / "quarantine").mkdir(parents=True)
    (checkpoint / "ledger" / "quarantine" / "0.json").write_text(json.dumps(rejected))
    log_file(gold / "_spark_metadata" / "0", [{"path": f"file://{data}", "size": size, "action": "add"}])
    parquet(gold / "date=2024-01-01" / "location_city=Oslo" / "part-stray.parquet", 1)
    log_file(lake / "gold" / "quarantine" / "_spark_metadata" / "0", [])
    committed_at = time.time() + 1  # the replay commits after the crashed attempt's stray was written
    os.utime(query / "commits" / "0", (committed_at, committed_at))
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")  # the attempt's run summary
    (checkpoint / "runs").mkdir(parents=True, exist_ok=True)
    (checkpoint / "runs" / f"{ATTEMPT}.json").write_text(json.dumps({"finished_at": finished, "seconds": 30}))


class FakeStepFunctions:
    class exceptions:  # noqa: N801 - boto3's shape
        class ExecutionAlreadyExists(Exception):
            pass

    def __init__(self) -> None:
        self.started: list[dict] = []

    def start_execution(self, **kwargs):
        self.started.append(kwargs)
        return {"executionArn": f"{kwargs['stateMachineArn']}:{kwargs['name']}"}


class Rehearsal:
    """The functions' handlers, invoked as the local engine invokes them, under one stack's IAM."""

    def __init__(self, lake: Path, stack) -> None:
        self.lake, self.stack = lake, stack
        self.settings = Settings.for_local_lake(
            str(lake), spark_job_uri=str(TEMPLATE.parent / "spark" / "job.py"),
            state_machine_arn=local_substitutions()["PlanRunFunctionArn"].replace(  # the world's machine
                ":lambda:", ":states:").replace("function:plan_run", "stateMachine:iotpipe-pipeline"))  # fmt: skip
        storage, leases, self.authorizer = iam.authorized_runtime(
            stack, str(lake), LocalStorage(), FileLeaseStore(self.settings.lease_store)
        )
        lambda_runtime.configure(self.settings, storage, leases)
        self.sfn = FakeStepFunctions()
        lambda_runtime.clients["stepfunctions"] = AuthorizedStepFunctions(self.sfn, self.authorizer)
        handlers = lambda_handlers()
        from functions.start_from_bronze_events.app import lambda_handler as trigger

        handlers["start_from_bronze_events"] = trigger
        self.bindings = Bindings(handlers, lambda c: 0, lambda a, s: (True, {}), lambda s, m: None)
        self.bindings.acting_as = lambda name: iam.acting_as(stack.logical_id_of_function(name))

    def use(self, stack) -> None:
        self.stack = self.authorizer.stack = stack

    def invoke(self, logical: str, payload: dict) -> dict:
        name = self.stack.world.names[logical]
        arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        return self.bindings.invoke_lambda({"FunctionName": arn, "Payload": payload})["Payload"]


def run_functions(lake: Path, good, bad=None, target: str | None = None) -> dict:
    """Every function once, in the order of a run; `target` runs under `bad` (a mutated stack)."""
    rehearsal = Rehearsal(lake, good)
    source = bronze(lake)
    out: dict = {}

    @contextlib.contextmanager
    def maybe_mutated(logical):
        if logical == target:
            rehearsal.use(bad)
        try:
            yield
        finally:
            rehearsal.use(good)

    def call(logical, payload):
        with maybe_mutated(logical):
            out[logical] = rehearsal.invoke(logical, payload)
        return out[logical]

    try:
        plan = call("PlanRunFunction", {"execution_id": EXECUTION, "execution_name": "run-1",
                                        "input": {"generate": False}})  # fmt: skip
        lease = call("AcquireLeaseFunction", {"execution_id": EXECUTION, "plan": plan, "waits_left": 0})
        assert lease["acquired"]
        spark_batch(lake, source)
        step_error = {"Error": "States.TaskFailed",
                      "Cause": json.dumps({"Step": {"Status": {"State": "FAILED", "FailureDetails": {}}}})}  # fmt: skip
        call("AssessStepFailureFunction", {"execution_id": EXECUTION, "plan": plan, "attempt": plan["attempt"],
                                           "step_error": step_error})  # fmt: skip
        verification = call("VerifyGoldFunction", {"execution_id": EXECUTION, "plan": plan,
                                                   "committed_before": lease["committed_before"]})  # fmt: skip
        call("ReleaseLeaseFunction", {"execution_id": EXECUTION, "plan": plan, "drain_round": 0, "attempt_number": 1,
                                      "attempt_run_id": plan["attempt"]["run_id"], "verification": verification,
                                      "error": None})  # fmt: skip
        assert plan["attempt"]["run_id"] == ATTEMPT
        report = {"execution_id": EXECUTION, "started_at": "2024-01-01T00:00:00+00:00", "plan": plan,
                  "attempt_number": 1, "verification": verification, "assessment": None, "error": None,
                  "deferred": False, "drain_rounds": 0}  # fmt: skip
        call("ReportStatusFunction", report)
        event = json.loads((Path(__file__).parent.parent / "events" / "s3_object_created.json").read_text())
        call("StartFromBronzeEventsFunction", {"Records": [{"body": json.dumps(event)}]})
    finally:
        lambda_runtime.clients.pop("stepfunctions", None)
    out["sfn"] = rehearsal.sfn.started
    out["decisions"] = rehearsal.authorizer.decisions
    return out


def test_every_function_runs_under_its_template_role(tmp_path, stack):
    out = run_functions(tmp_path, stack)
    assert out["VerifyGoldFunction"]["ok"] and out["VerifyGoldFunction"]["gold"]["moved_aside"]
    assert out["ReleaseLeaseFunction"]["released"] == "released"
    assert out["ReportStatusFunction"]["status"] == "SUCCEEDED"
    assert (tmp_path / "artifacts" / "runs").is_dir()
    assert out["StartFromBronzeEventsFunction"]["action"] == "start" and len(out["sfn"]) == 1
    principals = {principal for principal, _, _ in out["decisions"]}
    assert principals == set(FUNCTIONS)
    assert all(allowed for _, _, allowed in out["decisions"])


# ---------------------------------------------------------------- the mutation matrix
def without(template: dict, logical: str, drop) -> str:
    mutated = copy.deepcopy(template)
    drop(mutated["Resources"][logical]["Properties"])
    return json.dumps(mutated)


@pytest.fixture(scope="module")
def template():
    return parse_template(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def without_function_policies(template):
    texts = [without(template, f, lambda p: p.pop("Policies")) for f in FUNCTIONS]
    return dict(zip(FUNCTIONS, iam.load_stacks(texts)))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_removing_a_functions_policies_makes_the_rehearsal_deny_its_calls(
    tmp_path, stack, without_function_policies, function
):
    with pytest.raises(TaskError) as failure:
        run_functions(tmp_path, stack, without_function_policies[function], target=function)
    cause = json.loads(failure.value.cause)
    assert failure.value.error == "ClientError"
    assert re.search(r"AccessDenied(Exception)?\b", cause["errorMessage"]), cause["errorMessage"]
    assert f"/{function} is not authorized" in cause["errorMessage"]


# ---------------------------------------------------------------- the state machine role
SAMPLES = {"$.plan.run_id": "run-1", "$.cluster.cluster_id": "j-LOCAL000001", "$.command": ["generate"],
           "$$.StateMachine.Id": "arn:aws:states:us-east-1:123456789012:stateMachine:iotpipe-pipeline"}  # fmt: skip


def rendered(value):
    """A Task's Parameters with each path replaced by a sample value of what it selects."""
    if isinstance(value, list):
        return [rendered(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key.endswith(".$"):
            out[key[:-2]] = SAMPLES.get(item, "sample") if isinstance(item, str) else item
        else:
            out[key] = rendered(item)
    return out


def task_states(states: dict):
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        if state["Type"] == "Map":
            yield from task_states(state["ItemProcessor"]["States"])


def integrations() -> list[tuple[str, str, str, str | None, dict]]:
    definition = json.loads(substitute(DEFINITION.read_text(), local_substitutions()))
    found = []
    for name, state in task_states(definition["States"]):
        service, _, rest = state["Resource"].split(":::", 1)[1].partition(":")
        action, _, condition = rest.partition(".")
        found.append((name, service, action, condition or None, rendered(state.get("Parameters", {}))))
    return found


def check_all(stack, cluster_tags: dict) -> list[str]:
    """Names of the Task states the state machine role may not run."""
    authorizer = IntegrationAuthorizer(stack, cluster_tags.get)
    denied = []
    for name, service, action, condition, parameters in integrations():
        try:
            authorizer.check(service, action, condition, parameters)
        except TaskError:
            denied.append(name)
    return denied


def created_tags() -> dict[str, str]:
    create = next(p for n, s, a, c, p in integrations() if a == "createCluster")
    return {t["Key"]: t["Value"] for t in create["Tags"]}


def test_every_integration_is_allowed_to_the_state_machine_role(stack):
    assert check_all(stack, {"j-LOCAL000001": created_tags()}) == []


def test_created_clusters_carry_the_emr_managed_policy_tag_and_the_stack_tag():
    assert created_tags()["for-use-with-amazon-emr-managed-policies"] == "true"
    assert created_tags()["iotpipe-stack"] == "iotpipe"


def test_a_cluster_this_stack_did_not_create_gets_no_steps_and_is_not_terminated(stack):
    denied = ["RunSparkStep", "CompactGold", "TerminateCluster"]
    assert check_all(stack, {"j-LOCAL000001": {"iotpipe-stack": "another-stack"}}) == denied
    assert check_all(stack, {}) == denied


# Statements no integration needs at run time: log delivery is checked when the state machine is
# created or updated; AddTags is granted for tagging at creation only.
NOT_USED_AT_RUN_TIME = {"DeliverExecutionLogs", "TagOwnClustersOnCreate"}


def state_machine_mutations(template: dict) -> list[tuple[str, str]]:
    machine = template["Resources"]["PipelineStateMachine"]["Properties"]
    mutations = []
    for index, policy in enumerate(machine["Policies"]):
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        if statements is None:
            label = f"policy template {next(iter(policy))} {json.dumps(next(iter(policy.values())))}"
            mutations.append((label, without(template, "PipelineStateMachine",
                                             lambda p, i=index: p["Policies"].pop(i))))  # fmt: skip
            continue
        for position, statement in enumerate(statements):
            if statement.get("Sid") in NOT_USED_AT_RUN_TIME:
                continue
            mutations.append((f"statement {statement.get('Sid')}", without(
                template, "PipelineStateMachine",
                lambda p, i=index, j=position: p["Policies"][i]["Statement"].pop(j))))  # fmt: skip
    return mutations


def test_removing_any_state_machine_grant_is_caught(template):
    mutations = state_machine_mutations(template)
    stacks = iam.load_stacks([text for _, text in mutations])
    uncaught = [label for (label, _), mutated in zip(mutations, stacks)
                if not check_all(mutated, {"j-LOCAL000001": created_tags()})]  # fmt: skip
    assert len(mutations) >= 12 and uncaught == []


def test_the_local_world_agrees_with_the_runners_definition_substitutions(stack):
    assert stack.definition_substitutions() == local_substitutions()


def test_a_storage_method_without_an_iam_mapping_is_refused(tmp_path, stack):
    storage, _, _ = iam.authorized_runtime(stack, str(tmp_path), LocalStorage(), None)
    with pytest.raises(AttributeError, match="no IAM mapping"):
        storage.list_after  # noqa: B018


def test_a_call_outside_any_invocation_has_no_principal_to_act_as(tmp_path, stack):
    storage, _, _ = iam.authorized_runtime(stack, str(tmp_path), LocalStorage(), None)
    with pytest.raises(RuntimeError, match="outside any Lambda invocation"):
        storage.list(str(tmp_path / "bronze" / "raw"))


def test_paths_outside_the_lakes_buckets_are_refused(tmp_path, stack):
    storage, _, _ = iam.authorized_runtime(stack, str(tmp_path / "lake"), LocalStorage(), None)
    with iam.acting_as("PlanRunFunction"), pytest.raises(PermissionError, match="in no bucket"):
        storage.read_bytes(str(tmp_path / "elsewhere" / "x"))


def test_authorizer_records_the_decisions_it_made(stack):
    authorizer = Authorizer(stack)
    authorizer.require([iam.Request("sns:Publish", "arn:aws:sns:us-east-1:123456789012:iotpipe-reports")],
                       "Publish", "AccessDenied", principal="PipelineStateMachine")  # fmt: skip
    assert authorizer.decisions[0][2] is True


def test_report_status_writes_the_history_page_beside_the_manifest_under_its_role(tmp_path, stack):
    run_functions(tmp_path, stack)
    runs = tmp_path / "artifacts" / "runs"
    page = (runs / "run-1.html").read_text()
    assert (runs / "run-1.json").exists() and "run-1" in page and 'id="chart-gold"' in page
    assert [p.name.split("-", 1)[1] for p in (runs / "_history").iterdir()] == ["run-1.json"]
