"""Each Lambda's real logic, run under the IAM its role has in template.yaml, on a small lake
(Spark's checkpoint and real Iceberg commits of the three tables, made as the job makes them by
tests/lakes.py, no Spark); and every integration of the state machine, checked against the state
machine role.

The mutation matrix removes one function's `Policies` (or one state machine statement) from a
copy of the template: the rehearsal must then deny that principal's calls.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import GOLD, sqlite_path
from iotpipe.local import iam
from iotpipe.local.bindings import Bindings, TaskError
from iotpipe.local.catalog import LocalGlue
from iotpipe.local.iam.enforce import AuthorizedStepFunctions, Authorizer, IntegrationAuthorizer
from iotpipe.local.iam.stack import TEMPLATE, parse_template
from iotpipe.local.runner import DEFINITION, lambda_handlers, local_substitutions, substitute
from iotpipe.run import lambda_runtime
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.models import EMR_ON_EC2, EMR_SERVERLESS
from iotpipe.run.settings import Settings
from tests.lakes import JobCommits

EXECUTIONS = "arn:aws:states:us-east-1:123456789012:execution:iotpipe-pipeline"
EXECUTION = f"{EXECUTIONS}:run-1"
FUNCTIONS = ("PlanRunFunction", "AcquireLeaseFunction", "VerifyGoldFunction", "AssessStepFailureFunction",
             "ReleaseLeaseFunction", "ReportStatusFunction", "StartFromBronzeEventsFunction")  # fmt: skip


@pytest.fixture(scope="module")
def stack():
    return iam.load_stack()


@pytest.fixture(scope="module")
def serverless_stack():
    return iam.load_stack(world=iam.local_world(EMR_SERVERLESS))


# ---------------------------------------------------------------- a small lake, no Spark
ATTEMPT = "run-1-attempt-1"


def bronze(lake: Path) -> Path:
    source = lake / "bronze" / "raw" / "seed-1" / "part-00001.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text('{"event_id": "e0"}\n')
    return source


def lose_gold_file(commits: JobCommits, city: str) -> None:
    task = next(iter(commits.table(GOLD).scan(row_filter=f"location_city == '{city}'").plan_files()))
    Path(task.file.file_path.removeprefix("file:").removeprefix("//")).unlink()


def dead_run(settings: Settings, lose_a_file: bool = False) -> None:
    """Batch 0, committed by run-0, whose execution ended before its report: run-1's ReportStatus
    reports it (it asks Step Functions, reads the tables, writes run-0's report)."""
    commits = JobCommits(settings)
    commits.commit_batch(0, "run-0", gold={("2024-01-01", "Bergen"): 1}, execution=f"{EXECUTIONS}:run-0")
    if lose_a_file:
        lose_gold_file(commits, "Bergen")


def spark_batch(settings: Settings, lose_a_file: bool = False) -> None:
    """What one committed micro-batch of the job leaves behind, and the attempt's run summary;
    `lose_a_file` deletes one of its Gold files after the commit."""
    commits = JobCommits(settings)
    commits.commit_batch(1, "run-1", gold={("2024-01-01", "Oslo"): 20, ("2024-01-01", "Lyon"): 10},
                         quarantined={"malformed_json": 1}, execution=EXECUTION)  # fmt: skip
    if lose_a_file:
        lose_gold_file(commits, "Lyon")
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")  # the attempt's run summary
    summaries = Path(settings.checkpoint_uri) / "runs"
    summaries.mkdir(parents=True, exist_ok=True)
    (summaries / f"{ATTEMPT}.json").write_text(json.dumps({"finished_at": finished, "seconds": 30}))


class FakeStepFunctions:
    """Step Functions as the trigger and ReportStatus use it: every execution but run-1's has ended."""

    class exceptions:  # noqa: N801 - boto3's shape
        class ExecutionAlreadyExists(Exception):
            pass

        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self) -> None:
        self.started: list[dict] = []
        self.described: list[str] = []

    def start_execution(self, **kwargs):
        self.started.append(kwargs)
        return {"executionArn": f"{kwargs['stateMachineArn']}:{kwargs['name']}"}

    def describe_execution(self, executionArn: str):  # noqa: N803 - boto3's shape
        self.described.append(executionArn)
        return {"executionArn": executionArn, "status": "RUNNING" if executionArn == EXECUTION else "ABORTED"}


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
        glue = LocalGlue(sqlite_path(self.settings.catalog_uri))
        lambda_runtime.clients["glue"] = iam.AuthorizedGlue(glue, self.authorizer)
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


def run_functions(lake: Path, good, bad=None, target: str | None = None, lose_a_file: bool = False) -> dict:
    """Every function once, in the order of a run; `target` runs under `bad` (a mutated stack)."""
    rehearsal = Rehearsal(lake, good)
    bronze(lake)
    dead_run(rehearsal.settings, lose_a_file)
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
        spark_batch(rehearsal.settings, lose_a_file)
        step_error = {"Error": "States.TaskFailed",
                      "Cause": json.dumps({"Step": {"Status": {"State": "FAILED", "FailureDetails": {}}}})}  # fmt: skip
        call("AssessStepFailureFunction", {"execution_id": EXECUTION, "plan": plan, "attempt": plan["attempt"],
                                           "step_error": step_error})  # fmt: skip
        verification = call("VerifyGoldFunction", {"execution_id": EXECUTION, "plan": plan})
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
        for service in ("stepfunctions", "glue"):
            lambda_runtime.clients.pop(service, None)
    out["sfn"] = rehearsal.sfn.started
    out["described"] = rehearsal.sfn.described
    out["decisions"] = rehearsal.authorizer.decisions
    return out


def test_every_function_runs_under_its_template_role(tmp_path, stack):
    out = run_functions(tmp_path, stack)
    assert out["AssessStepFailureFunction"]["verdict"] == "complete"
    verification = out["VerifyGoldFunction"]
    assert verification["ok"] and verification["reconciliation"]["reconciles"]
    assert (verification["gold"]["first_batch"], verification["gold"]["new_rows"]) == (1, 30)
    assert out["ReleaseLeaseFunction"]["released"] == "released"
    assert out["ReportStatusFunction"]["status"] == "SUCCEEDED"
    assert out["ReportStatusFunction"]["reported_for"] == ["run-0"] and out["described"] == [f"{EXECUTIONS}:run-0"]
    assert json.loads((tmp_path / "artifacts" / "runs" / "run-0.json").read_text())["report"]["status"] == "INTERRUPTED"
    assert out["StartFromBronzeEventsFunction"]["action"] == "start" and len(out["sfn"]) == 1
    principals = {principal for principal, _, _ in out["decisions"]}
    assert principals == set(FUNCTIONS)
    assert all(allowed for _, _, allowed in out["decisions"])


def test_a_lost_gold_file_is_found_under_verify_golds_role_and_the_run_is_unreconciled(tmp_path, stack):
    """The HEAD of a missing object answers 404 only to a role that may list its prefix (403 to
    any other): VerifyGold (for its run) and ReportStatus (for a run that died) must be allowed
    that, or a lost file would fail the run as AccessDenied instead of showing it UNRECONCILED."""
    out = run_functions(tmp_path, stack, lose_a_file=True)
    gold = out["VerifyGoldFunction"]["gold"]
    assert gold["missing_files"] == 1 and "location_city=Lyon" in gold["examples"]["missing"][0]
    assert out["ReportStatusFunction"]["status"] == "UNRECONCILED"
    dead = json.loads((tmp_path / "artifacts" / "runs" / "run-0.json").read_text())
    assert dead["verification"]["gold"]["missing_files"] == 1 and dead["report"]["status"] == "INTERRUPTED"
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


# The Task states of one runtime only: the plan's runtime never lets the other runtime's be entered.
NOT_ON = {
    EMR_ON_EC2: {"RunSparkJobRun", "MaintainTablesJobRun"},
    EMR_SERVERLESS: {"CreateCluster", "RunSparkStep", "MaintainTables", "TerminateCluster"},
}


def integrations(runtime: str = EMR_ON_EC2) -> list[tuple[str, str, str, str | None, dict]]:
    definition = json.loads(substitute(DEFINITION.read_text(), local_substitutions(runtime)))
    found = []
    for name, state in task_states(definition["States"]):
        if name in NOT_ON[runtime]:
            continue
        service, _, rest = state["Resource"].split(":::", 1)[1].partition(":")
        action, _, condition = rest.partition(".")
        found.append((name, service, action, condition or None, rendered(state.get("Parameters", {}))))
    return found


def check_all(stack, cluster_tags: dict) -> list[str]:
    """Names of the Task states (of the stack's runtime) the state machine role may not run."""
    authorizer = IntegrationAuthorizer(stack, cluster_tags.get)
    denied = []
    for name, service, action, condition, parameters in integrations(stack.world.parameters["SparkRuntime"]):
        try:
            authorizer.check(service, action, condition, parameters)
        except TaskError:
            denied.append(name)
    return denied


def created_tags() -> dict[str, str]:
    create = next(p for n, s, a, c, p in integrations() if a == "createCluster")
    return {t["Key"]: t["Value"] for t in create["Tags"]}


def test_every_integration_is_allowed_to_the_state_machine_role(stack, serverless_stack):
    assert check_all(stack, {"j-LOCAL000001": created_tags()}) == []
    assert check_all(serverless_stack, {}) == []
    assert "RunSparkJobRun" in [name for name, *_ in integrations(EMR_SERVERLESS)]


def test_a_job_run_on_another_application_or_with_another_role_is_denied(serverless_stack):
    authorizer = IntegrationAuthorizer(serverless_stack, {}.get)
    (job,) = [p for name, _, _, _, p in integrations(EMR_SERVERLESS) if name == "RunSparkJobRun"]
    authorizer.check("emr-serverless", "startJobRun", "sync", job)
    for changed in ({"ApplicationId": "00anotherapp"}, {"ExecutionRoleArn": "arn:aws:iam::123456789012:role/admin"}):
        with pytest.raises(TaskError) as denied:
            authorizer.check("emr-serverless", "startJobRun", "sync", {**job, **changed})
        assert denied.value.error == "EMRServerless.AccessDeniedException"


def test_created_clusters_carry_the_emr_managed_policy_tag_and_the_stack_tag():
    assert created_tags()["for-use-with-amazon-emr-managed-policies"] == "true"
    assert created_tags()["iotpipe-stack"] == "iotpipe"


def test_a_cluster_this_stack_did_not_create_gets_no_steps_and_is_not_terminated(stack):
    denied = ["RunSparkStep", "MaintainTables", "TerminateCluster"]
    assert check_all(stack, {"j-LOCAL000001": {"iotpipe-stack": "another-stack"}}) == denied
    assert check_all(stack, {}) == denied


# Statements no integration needs at run time: log delivery is checked when the state machine is
# created or updated; AddTags is granted for tagging at creation only.
NOT_USED_AT_RUN_TIME = {"DeliverExecutionLogs", "TagOwnClustersOnCreate"}


def statement_sid(statement: dict) -> str | None:
    """A statement's Sid, also of one that only one runtime has (`Fn::If [condition, statement, NoValue]`)."""
    if "Fn::If" in statement:
        statement = statement["Fn::If"][1]
    return statement.get("Sid")


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
            if statement_sid(statement) in NOT_USED_AT_RUN_TIME:
                continue
            mutations.append((f"statement {statement_sid(statement)}", without(
                template, "PipelineStateMachine",
                lambda p, i=index, j=position: p["Policies"][i]["Statement"].pop(j))))  # fmt: skip
    return mutations


def test_removing_any_state_machine_grant_is_caught(template):
    """On the runtime that uses it: a statement only EMR Serverless needs is caught there."""
    mutations = state_machine_mutations(template)
    translated = iam.stack.translate(*[text for _, text in mutations])
    worlds = [iam.local_world(EMR_ON_EC2), iam.local_world(EMR_SERVERLESS)]
    uncaught = [label for (label, _), mutated in zip(mutations, translated)
                if not any(check_all(iam.Stack(mutated, world), {"j-LOCAL000001": created_tags()})
                           for world in worlds)]  # fmt: skip
    assert len(mutations) >= 16 and uncaught == []


@pytest.mark.parametrize("runtime", [EMR_ON_EC2, EMR_SERVERLESS])
def test_the_local_world_agrees_with_the_runners_definition_substitutions(runtime):
    stack = iam.load_stack(world=iam.local_world(runtime))
    assert stack.definition_substitutions() == local_substitutions(runtime)


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


def test_report_status_writes_the_run_page_and_the_history_page_beside_the_manifest_under_its_role(tmp_path, stack):
    run_functions(tmp_path, stack)
    runs = tmp_path / "artifacts" / "runs"
    page, history = (runs / "run-1.html").read_text(), (runs / "history.html").read_text()
    assert (runs / "run-1.json").exists() and "<h1>Run run-1 " in page and 'id="chart-cities"' in history
    # run-1's entry, and run-0's: the report run-1 wrote for the run that died before its own.
    assert sorted(p.name.split("-", 1)[1] for p in (runs / "_history").iterdir()) == ["run-0.json", "run-1.json"]
