"""The fault matrix: the real state machine, Lambdas, generator and Spark job, run locally through
injected faults. Every case asserts the same outcomes:

- the faulted run's final status;
- what every run on the lake reported (the `runs` table) adds up to independent reads of the
  tables (PyIceberg, a plain Iceberg reader; `iotpipe query`, Athena's tables locally) and to the
  generator's own truth: no record lost, none in Gold twice;
- the lease is free, or held by a live run, when the faulted run ends;
- the next run on the same lake succeeds.

The matrix is printed as a table at the end of the suite, and docs/design.md carries the same
table (checked there: tests/conftest.py).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from iotpipe.local.bindings import TaskError
from iotpipe.query import run_query
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.models import EMR_ON_EC2, EMR_SERVERLESS
from iotpipe.run.settings import Settings
from tests.orchestration.harness import (
    assert_readers_agree,
    created,
    engine,
    generate_into,
    gold_counts,
    iceberg_table,
    local_settings,
    record_coverage,
    truth,
    upload_after_first_step,
)
from tests.suite_records import record

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- an independent read of the lake
def committed_rows(lake: Path, table: str) -> int:
    """The table's rows as PyIceberg reads its current snapshot."""
    return iceberg_table(lake, table).scan(selected_fields=("event_id",)).to_arrow().num_rows


def runs_table(lake: Path) -> dict:
    """The `runs` table, summed over every run (what Athena's `runs` holds, locally)."""
    (row,) = run_query(str(lake), "select count(*), sum(input_records), sum(gold_records), sum(quarantined_records), "
                                  "sum(duplicate_records) from runs")[1]  # fmt: skip
    return dict(zip(("runs", "input", "gold", "quarantined", "duplicates"), (int(v or 0) for v in row)))


def lease_of(settings: Settings):
    return FileLeaseStore(settings.lease_store).get(settings.lease_key)


# ---------------------------------------------------------------- faults
@dataclass
class Case:
    name: str
    fault: str  # what is injected, for the table
    expected: str  # the faulted run's final status
    execution_input: dict
    settings: dict = field(default_factory=dict)
    before: Optional[Callable[[Path, Settings], list]] = None  # set the lake up; returns executions run
    customise: Optional[Callable[[Path, Settings], Callable]] = None
    lease_at_end: Optional[Callable[[object, Settings, dict], str]] = None  # who may still hold it, and why
    after: Optional[Callable[[Path, Settings], None]] = None  # what the live holder does before the next run
    check: Optional[Callable[[list, Path, Settings], None]] = None
    next_input: dict = field(default_factory=lambda: {"generate": False})
    next_settings: dict = field(default_factory=dict)  # the next run's settings (by default the deployment's)
    check_next: Optional[Callable[[list, Path], None]] = None
    runtime: str = EMR_ON_EC2  # the deployment's SparkRuntime, for the faulted run and the next


def wrap_lambda(bindings, function: str, around: Callable[[Callable, dict], dict]) -> None:
    """Run `around(real_invoke, parameters)` in place of every invocation of `function`."""
    real = bindings.invoke_lambda

    def invoke(parameters):
        if parameters["FunctionName"].rsplit(":", 1)[-1] == function:
            return around(real, parameters)
        return real(parameters)

    bindings.invoke_lambda = invoke


def fail_once_after_the_work(function: str):
    """The function does its work, then Lambda reports a service error: Step Functions retries."""

    def customise(lake, settings):
        def apply(bindings):
            calls = []

            def around(real, parameters):
                result = real(parameters)
                calls.append(1)
                if len(calls) == 1:
                    raise TaskError("Lambda.ServiceException", "the response was lost after the work was done")
                return result

            wrap_lambda(bindings, function, around)

        return apply

    return customise


def drain_decision_survives_a_lost_answer(lake, settings):
    """Data lands after the first step (a pending mark): ReleaseLease clears the mark and decides
    to drain, then its answer is lost; the retry must drain all the same."""
    lose_answer = fail_once_after_the_work("release_lease")(lake, settings)
    arrive = upload_after_first_step(lake, 155)

    def apply(bindings):
        arrive(bindings)
        lose_answer(bindings)

    return apply


def release_lease_always_fails(lake, settings):
    def apply(bindings):
        def around(real, parameters):
            raise TaskError("ConnectionError", json.dumps({"errorMessage": "lease table unreachable"}))

        wrap_lambda(bindings, "release_lease", around)

    return apply


def first_batch_committed(settings: Settings, seconds: float = 120) -> None:
    entry = Path(settings.checkpoint_uri) / "transform" / "commits" / "0"
    deadline = time.time() + seconds
    while not entry.exists() and time.time() < deadline:
        time.sleep(0.05)


def steal_the_lease_after_the_first_batch(lake, settings):
    """Another run takes the lease (as after an expiry) once the first batch is recorded (a job
    run's spark-submit and an EMR step's are the same local counterpart, run_spark_step)."""

    def apply(bindings):
        real = bindings.run_spark_step
        stolen = threading.Event()

        def steal():
            first_batch_committed(settings)
            leases = FileLeaseStore(settings.lease_store)
            holder = leases.get(settings.lease_key).holder
            leases.give_up(settings.lease_key, holder)
            assert leases.acquire(settings.lease_key, "another-run", 600)
            stolen.set()

        def step(args, step_id):
            if not stolen.is_set():
                threading.Thread(target=steal, daemon=True).start()
            return real(args, step_id)

        bindings.run_spark_step = step

    return apply


def cancel_the_job_run_after_the_first_batch(lake, settings):
    """An operator cancels the first job run (CancelJobRun) once batch 0 is committed."""

    def apply(bindings):
        real = bindings.start_job_run

        def cancel() -> None:
            first_batch_committed(settings)
            (running,) = [job_run for job_run, state in bindings.job_runs.items() if state == "RUNNING"]
            bindings.cancel_job_run(running)

        def start(parameters):
            if not bindings.job_runs:
                threading.Thread(target=cancel, daemon=True).start()
            return real(parameters)

        bindings.start_job_run = start

    return apply


def job_run_states_time_out(lake, settings):
    """The first job run's state passes its timeout once batch 0 is committed, so Step Functions
    cancels the job run (States.Timeout); so does the maintenance job run's, before it commits."""

    def apply(bindings):
        real = bindings.start_job_run

        def start(parameters):
            if parameters["Name"].endswith("-maintenance"):
                raise TaskError("States.Timeout", "the maintenance job run's state timed out")
            if bindings.job_runs:
                return real(parameters)
            cancelled = threading.Event()

            def time_out() -> None:
                first_batch_committed(settings)
                (running,) = [job_run for job_run, state in bindings.job_runs.items() if state == "RUNNING"]
                bindings.cancel_job_run(running)
                cancelled.set()

            threading.Thread(target=time_out, daemon=True).start()
            with pytest.raises(TaskError):
                real(parameters)
            assert cancelled.is_set()
            raise TaskError("States.Timeout", "the job run's state timed out")

        bindings.start_job_run = start

    return apply


def a_driver_still_alive_during_verification(lake, settings):
    """The step ended, but a driver of the run may still write (its claim runs 8 more seconds)."""

    def apply(bindings):
        def around(real, parameters):
            run_id = parameters["Payload"]["plan"]["run_id"]
            leases = FileLeaseStore(settings.lease_store)
            assert leases.claim_driver(settings.lease_key, run_id, "still-alive", 8) is not None
            return real(parameters)

        wrap_lambda(bindings, "verify_gold", around)

    return apply


def generate_and_take(seed: int, shards: int = 2):
    """A lake whose Bronze was generated and fully processed by an earlier run."""

    def before(lake, settings):
        generate_into(lake, seed, size=f"{shards}MiB", shards=shards)
        with engine(lake, settings) as local:
            return local.run({"generate": False})

    return before


def an_arrival_older_than_the_last_run(lake, settings):
    newest = max(p.stat().st_mtime for p in (lake / "bronze" / "raw").rglob("*.jsonl"))
    FileLeaseStore(settings.lease_store).note_arrival(settings.lease_key, newest)


def held_by(holder: str):
    def check(execution, settings, lease_record):
        assert lease_record["holder"] == holder, lease_record
        return f"held by {holder} (live)"

    return check


def expiring(execution, settings, lease_record):
    """ReleaseLease never ran: the lease stays with the run until it expires, then the next takes it."""
    assert lease_record["holder"] == execution.report["run_id"]
    assert lease_record["expires_at"] <= time.time() + settings.lease_initial_seconds
    return f"expires within {settings.lease_initial_seconds:.0f} s"


def other_run_finishes(lake, settings):
    leases = FileLeaseStore(settings.lease_store)
    holder = leases.get(settings.lease_key).holder
    assert leases.give_up(settings.lease_key, holder)[0] == "released"


def wait_for_expiry(lake, settings):
    while lease_of(settings).expires_at > time.time():
        time.sleep(0.2)


# ---------------------------------------------------------------- case-specific checks
def spark_state(settings: Settings) -> str:
    return "RunSparkJobRun" if settings.spark_runtime == EMR_SERVERLESS else "RunSparkStep"


def resumed(executions, lake, settings):
    report = executions[-1].report
    assert report["attempts"] == 2 and executions[-1].entered_states().count(spark_state(settings)) == 2
    assert report["reconciliation"]["reconciles"]


def job_run_cancelled_then_resumed(executions, lake, settings):
    resumed(executions, lake, settings)
    execution = executions[-1]
    assert ("emr-serverless.cancel", next(iter(execution.bindings.job_runs))) in execution.bindings.calls
    assert execution.report["step_error"]["job_run_state"] == "CANCELLED"
    # The report names the resume's job run, the last one started (maintenance was not due).
    assert "MaintainTablesJobRun" not in execution.entered_states()
    assert execution.report["spark"]["job_run_id"] == list(execution.bindings.job_runs)[-1]


def timed_out_then_resumed_and_maintenance_timeout_reported(executions, lake, settings):
    resumed(executions, lake, settings)
    report = executions[-1].report
    assert report["step_error"]["error"] == "States.Timeout"
    assert report["maintenance"]["error"] == "States.Timeout"


def complete_output_flagged(executions, lake, settings):
    report = executions[-1].report
    assert report["step_error"]["verdict"] == "complete" and report["attempts"] == 1


def failed_before_any_batch(executions, lake, settings):
    execution = executions[-1]
    assert execution.report["records"]["input"] == 0 and "no progress" in execution.report["error"]["Cause"]
    assert created(execution) and sorted(created(execution)) == sorted(
        d for w, d in execution.bindings.calls if w == "emr.terminate"
    )


def poison_costs_one_resume_and_reports_its_commits(executions, lake, settings):
    report = executions[-1].report
    assert report["attempts"] == 2, "the second attempt made no progress: no third"
    # A failed run reports what it committed (here the lake was empty before it).
    assert report["records"]["gold"] == committed_rows(lake, "gold")
    assert report["records"]["quarantined"] == committed_rows(lake, "quarantine")
    assert "no progress" in report["error"]["Cause"]


def lease_renewals_recovered(executions, lake, settings):
    report = executions[-1].report
    assert report["drain_rounds"] == 1, "the retried ReleaseLease repeated its decision to drain"
    assert executions[-1].bindings.calls.count(("lambda", "release_lease")) == 3  # round 0 twice, round 1


def stopped_writing(executions, lake, settings):
    logs = [p.read_text(errors="replace") for p in (lake / "artifacts" / "logs").glob("*.log")]
    assert any("LeaseLost" in log for log in logs), "the job stopped on a lease it could not prove"


def maintenance_waited_for_the_live_driver(executions, lake, settings):
    """The tables are only read by VerifyGold (a live writer can change no committed snapshot); the
    maintenance step, which commits, waits out the driver's claim before it starts."""
    report = executions[-1].report
    assert report["reconciliation"]["reconciles"] and report["maintenance"]["tables"]["gold"]
    logs = [p.read_text(errors="replace") for p in (lake / "artifacts" / "logs").glob("*-maintenance-*.log")]
    logs += [p.read_text(errors="replace") for p in (lake / "artifacts" / "logs").glob("*.log")]
    assert any("IOTPIPE_WAITED_FOR_PREVIOUS_DRIVER" in log for log in logs)


def maintenance_failure_reported(executions, lake, settings):
    report = executions[-1].report
    assert report["maintenance"]["error"] == "States.TaskFailed" and report["reconciliation"]["reconciles"]
    assert not any("iotpipe.maintenance" in s.summary.additional_properties
                   for s in iceberg_table(lake, "gold").snapshots())  # fmt: skip


def the_next_maintenance_merges(following, lake):
    """The next run's maintenance merges what the crashed one did not, as one commit readers see whole."""
    assert following[-1].report["maintenance"]["tables"]["gold"]["files_rewritten"] > 0
    assert any("iotpipe.maintenance" in s.summary.additional_properties
               for s in iceberg_table(lake, "gold").snapshots())  # fmt: skip


def report_answer_lost_once_with_metrics_counted(lake, settings):
    """ReportStatus's first call does its work and its answer is lost; every metric it adds is recorded."""
    from iotpipe.run.lambda_runtime import metrics

    lose_answer = fail_once_after_the_work("report_status")(lake, settings)

    def apply(bindings):
        lose_answer(bindings)
        real_add = type(metrics).add_metric

        def add_metric(name, unit, value, *args, **kwargs):
            bindings.calls.append(("metric", name))
            return real_add(metrics, name, unit, value, *args, **kwargs)

        metrics.add_metric = add_metric  # an instance attribute: the check removes it

    return apply


def retried_report_counts_once(executions, lake, settings):
    from iotpipe.run.lambda_runtime import metrics

    vars(metrics).pop("add_metric", None)
    execution = executions[-1]
    assert execution.bindings.calls.count(("lambda", "report_status")) == 2
    assert execution.bindings.calls.count(("metric", "InputRecords")) == 1, "metrics counted once"
    manifests = list((lake / "artifacts" / "runs").glob(f"{execution.report['run_id']}*.json"))
    assert len(manifests) == 1
    assert execution.report["ignored_objects"]["count"] == 1, "the retry reports the notes the first call filed"


def serverless_failure_flagged(executions, lake, settings):
    complete_output_flagged(executions, lake, settings)
    step_error = executions[-1].report["step_error"]
    assert step_error["job_run_state"] == "FAILED" and step_error["job_run_id"]


def serverless_failed_before_any_batch(executions, lake, settings):
    execution = executions[-1]
    assert execution.report["records"]["input"] == 0 and "no progress" in execution.report["error"]["Cause"]
    assert [w for w, _ in execution.bindings.calls if w.startswith("emr.")] == [], "no cluster on EMR Serverless"


def nothing_to_do_costs_no_cluster(executions, lake, settings):
    execution = executions[-1]
    assert [w for w, _ in execution.bindings.calls if w.startswith("emr")] == []
    assert "AcquireLease" in execution.entered_states() and "RunSparkStep" not in execution.entered_states()


# The rows about maintenance itself: two batches' files in a partition make it due.
MAINTENANCE_DUE = {"maintenance_after_commits": 2}
# A cancelled job run's driver cannot end its claim on the lease: the resume waits it out, for
# as long as a heartbeat extends it (lease_seconds, 300 s by default; here 6 s).
SHORT_CLAIMS = {"lease_seconds": 6.0}


def a_small_lake(seed: int):
    """Two objects of one day's events: two batches of few partitions."""

    def before(lake, settings):
        generate_into(lake, seed, size="2MiB", shards=2, days=1)
        return []

    return before


def data_and_a_running_run(lake, settings):
    generate_into(lake, 58)
    assert FileLeaseStore(settings.lease_store).acquire(settings.lease_key, "the-running-run", 600)
    return []


def data_taken_and_its_arrival_recorded(lake, settings):
    executions = generate_and_take(64)(lake, settings)
    an_arrival_older_than_the_last_run(lake, settings)
    return executions


def an_ignored_object(lake, settings):
    generate_into(lake, 61)
    (lake / "bronze" / "raw" / "notes.csv").write_text("not,data\n")
    return []


def crash(name: str, fault: str, injected: str, seed: int) -> Case:
    """A driver halted at one point of batch 1's commits: the run resumes from the checkpoint."""
    return Case(name, injected, "SUCCEEDED", {"generate": False, "fault_injection": fault},
                before=a_small_lake(seed), check=resumed)  # fmt: skip


CASES = [
    Case("crash mid-batch", "driver halted inside batch 1's Gold commit (files written, not committed)", "SUCCEEDED",
         {"generate": False, "fault_injection": "crash-mid-batch:1"}, before=a_small_lake(51), check=resumed),
    crash("crash before the Gold commit", "crash-before-gold:1",
          "driver halted in batch 1 before its Gold commit", 71),
    crash("crash after the Gold commit", "crash-after-gold:1",
          "driver halted between batch 1's Gold and quarantine commits", 72),
    crash("crash inside the quarantine commit", "crash-inside-quarantine:1",
          "driver halted inside batch 1's quarantine commit", 73),
    crash("crash after the quarantine commit", "crash-after-quarantine:1",
          "driver halted before batch 1's seen-id commit", 74),
    crash("crash after the last commit of a batch", "crash-after-seen-ids:1",
          "driver halted after batch 1's commits, before the query's", 75),
    Case("failure after the last commit", "step FAILED after both queries finished", "SUCCEEDED_WITH_STEP_ERROR",
         {"days": 1, "size": "2MiB", "shards": 2, "seed": 52, "fault_injection": "fail-after-commit"},
         check=complete_output_flagged),
    Case("failure before the first batch", "persistent error at start", "FAILED",
         {"days": 1, "size": "2MiB", "shards": 2, "seed": 53, "fault_injection": "fail-at-start"},
         check=failed_before_any_batch),
    Case("poison batch", "batch 1 fails on every attempt", "FAILED",
         {"days": 1, "size": "3MiB", "shards": 3, "seed": 54, "fault_injection": "poison-batch:1",
          "max_resume_attempts": 3},
         check=poison_costs_one_resume_and_reports_its_commits),
    Case("lease renewal error, transient", "one renewal raises; data lands mid-run; ReleaseLease's answer lost once",
         "SUCCEEDED", {"days": 1, "size": "3MiB", "shards": 3, "seed": 55, "fault_injection": "lease-renewal-flaky"},
         settings={"lease_seconds": 3.0}, customise=drain_decision_survives_a_lost_answer,
         check=lease_renewals_recovered),
    Case("lease renewal error, permanent", "every renewal of the job raises", "FAILED",
         {"days": 1, "size": "4MiB", "shards": 4, "seed": 56, "fault_injection": "lease-renewal-fails"},
         settings={"lease_seconds": 3.0}, check=stopped_writing),
    Case("lease stolen mid-run", "another run takes the lease after batch 0", "FAILED",
         {"days": 1, "size": "4MiB", "shards": 4, "seed": 57}, settings={"lease_seconds": 3.0},
         customise=steal_the_lease_after_the_first_batch, lease_at_end=held_by("another-run"),
         after=other_run_finishes, check=stopped_writing),
    Case("run started while another holds the lease", "lease held by a live run", "DEFERRED",
         {"generate": False}, settings={"lease_wait_rounds": 0},
         before=data_and_a_running_run,
         lease_at_end=held_by("the-running-run"), after=other_run_finishes),
    Case("VerifyGold racing a live writer", "a driver's claim still live at VerifyGold", "SUCCEEDED",
         {"generate": False}, before=a_small_lake(59), settings=MAINTENANCE_DUE,
         customise=a_driver_still_alive_during_verification, check=maintenance_waited_for_the_live_driver),
    Case("ReleaseLease failing", "ReleaseLease raises on every call", "FAILED",
         {"days": 1, "size": "2MiB", "shards": 2, "seed": 60},
         settings={"lease_initial_seconds": 6.0, "lease_seconds": 6.0},
         customise=release_lease_always_fails, lease_at_end=expiring, after=wait_for_expiry),
    Case("Lambda retried after its work", "ReportStatus's answer lost once", "SUCCEEDED",
         {"generate": False}, before=an_ignored_object, customise=report_answer_lost_once_with_metrics_counted,
         check=retried_report_counts_once),
    Case("maintenance crash", "driver halted inside the commit of Gold's rewrite", "SUCCEEDED",
         {"generate": False, "fault_injection": "crash-inside-maintenance"}, before=a_small_lake(76),
         settings=MAINTENANCE_DUE, next_input={"days": 1, "size": "1MiB", "shards": 1, "seed": 77},
         next_settings=MAINTENANCE_DUE, check_next=the_next_maintenance_merges,
         check=maintenance_failure_reported),
    Case("nothing new to do", "a trigger run for data already taken", "NOTHING_TO_DO",
         {"generate": False, "started_by": "trigger"}, settings={"arrival_clock_margin_seconds": 0.0},
         before=data_taken_and_its_arrival_recorded,
         check=nothing_to_do_costs_no_cluster),
    # The same job through EMR Serverless's integration (emr-serverless:startJobRun.sync).
    Case("EMR Serverless: job run failing after its commits", "job run FAILED after both queries finished",
         "SUCCEEDED_WITH_STEP_ERROR", {"generate": False, "fault_injection": "fail-after-commit"},
         before=a_small_lake(91), check=serverless_failure_flagged, runtime=EMR_SERVERLESS),
    Case("EMR Serverless: job run failing before them", "persistent error at start", "FAILED",
         {"generate": False, "fault_injection": "fail-at-start"}, before=a_small_lake(92),
         check=serverless_failed_before_any_batch, runtime=EMR_SERVERLESS),
    Case("EMR Serverless: job run cancelled", "CancelJobRun after batch 0", "SUCCEEDED",
         {"generate": False}, before=a_small_lake(93), settings=SHORT_CLAIMS,
         customise=cancel_the_job_run_after_the_first_batch,
         check=job_run_cancelled_then_resumed, runtime=EMR_SERVERLESS),
    Case("EMR Serverless: job run timing out",
         "the job run's state times out after batch 0, maintenance's before it commits", "SUCCEEDED",
         {"generate": False}, before=a_small_lake(94), settings={**MAINTENANCE_DUE, **SHORT_CLAIMS},
         customise=job_run_states_time_out,
         check=timed_out_then_resumed_and_maintenance_timeout_reported, runtime=EMR_SERVERLESS),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "-") for c in CASES])
def test_fault(case: Case, tmp_path):
    lake = tmp_path
    settings = local_settings(lake, spark_runtime=case.runtime, **case.settings)
    executions = list(case.before(lake, settings) if case.before else [])
    with engine(lake, settings, customise=case.customise(lake, settings) if case.customise else None) as local:
        faulted = local.run(case.execution_input)
    for execution in faulted:
        record_coverage(execution)
    first = faulted[0]
    assert first.report["status"] == case.expected, (first.report.get("error"), first.report.get("step_error"))
    if case.check:
        case.check(faulted[:1], lake, settings)

    lease = lease_of(settings)
    lease_record = {"holder": lease.holder if lease else None, "expires_at": lease.expires_at if lease else 0}
    lease_state = case.lease_at_end(first, settings, lease_record) if case.lease_at_end else "free"
    if not case.lease_at_end:
        assert lease_record["holder"] is None, lease_record
    if case.after:
        case.after(lake, settings)

    with engine(lake, local_settings(lake, spark_runtime=case.runtime, **case.next_settings)) as local:
        following = local.run(case.next_input)
    for execution in following:
        record_coverage(execution)
    assert [e.report["status"] for e in following] == ["SUCCEEDED"] * len(following)
    if case.check_next:
        case.check_next(following, lake)
    executions += faulted + following

    expected = truth(lake)
    gold, distinct = gold_counts(lake)
    quarantined = committed_rows(lake, "quarantine")
    assert gold == distinct == expected["gold"], "no record lost, none in Gold twice"
    assert quarantined == sum(expected["quarantined"].values())
    reported = {
        k: sum(e.report["records"][k] for e in executions) for k in ("input", "gold", "quarantined", "duplicates")
    }
    assert reported == {"input": expected["records"], "gold": gold, "quarantined": quarantined,
                        "duplicates": expected["duplicates"]}  # fmt: skip
    assert {k: v for k, v in runs_table(lake).items() if k != "runs"} == reported, "the runs table holds every record"
    assert assert_readers_agree(lake) == {"gold": gold, "quarantine": quarantined}  # Athena's tables read the same
    assert lease_of(settings).holder is None
    record("fault-matrix", [case.name, case.fault, case.expected, lease_state])


def matrix_check(rows: list[list[str]]) -> tuple[str, list[str]]:
    """The recorded rows as docs/design.md's table, in the order of CASES, and what is wrong with
    them: a case that did not pass, or a row docs/design.md lacks."""
    order = {case.name: number for number, case in enumerate(CASES)}
    rows = sorted(rows, key=lambda row: order[row[0]])
    passed = {row[0] for row in rows}
    problems = [f"fault matrix: case '{case.name}' did not pass" for case in CASES if case.name not in passed]
    design = (ROOT / "docs" / "design.md").read_text()
    problems += [f"docs/design.md lacks the fault matrix row for '{name}'"
                 for name, fault, status, _ in rows if f"| {name} | {fault} | {status} |" not in design]  # fmt: skip
    lines = ["fault matrix (each row: the runs table reconciled against the tables as read by PyIceberg and "
             "`iotpipe query`, and the generator's truth; no duplicate in Gold; next run SUCCEEDED)",
             "| fault | injected | faulted run | lease when it ends |", "| --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {name} | {fault} | {status} | {lease} |" for name, fault, status, lease in rows]
    return "\n".join(lines), problems


# ---------------------------------------------------------------- executions that die between states
def killed_at(state: str):
    """The execution dies as it reaches `state`: an error no Catch takes (as an execution stopped,
    timed out or cut off would leave things), so nothing after it runs and the lease stays held
    until it expires."""

    def apply(bindings):
        def die(*args, **kwargs):
            raise TaskError("States.DataLimitExceeded", f"injected: the execution ends at {state}")

        if state == "PublishReport":
            bindings.publish_report = die
        else:
            wrap_lambda(bindings, {"VerifyGold": "verify_gold", "ReportStatus": "report_status"}[state],
                        lambda real, parameters: die())  # fmt: skip

    return apply


def test_runs_killed_between_states_are_reported_by_the_next_run_exactly_once(tmp_path):
    """The first run on a fresh lake dies before VerifyGold, the second after VerifyGold and before
    ReportStatus, the third after its report and before it is published; a fourth runs clean.
    Every batch is reported by exactly one run: the dead runs' by the next run that reports, as
    INTERRUPTED, with the counts of the batches they committed."""
    settings = local_settings(tmp_path, lease_initial_seconds=15.0, lease_seconds=6.0, lease_wait_rounds=60)
    executions = []
    for seed, state in ((81, "VerifyGold"), (82, "ReportStatus"), (83, "PublishReport"), (84, None)):
        generate_into(tmp_path, seed, size="1MiB", shards=1, days=1)
        with engine(tmp_path, settings, customise=killed_at(state) if state else None) as local:
            (execution,) = local.run({"generate": False})
        record_coverage(execution)
        assert execution.status == ("FAILED" if state else "SUCCEEDED"), state
        executions.append(execution)
    first, second, third, fourth = executions
    assert first.report is None and second.report is None  # they died before their reports
    assert third.report["status"] == fourth.report["status"] == "SUCCEEDED"
    history = {row[0]: row[1:] for row in run_query(str(tmp_path), "select run_id, status, input_records from runs")[1]}
    assert len(history) == 4 and sorted(status for status, _ in history.values()) == [
        "INTERRUPTED", "INTERRUPTED", "SUCCEEDED", "SUCCEEDED"]  # fmt: skip
    assert all(inputs > 0 for _, inputs in history.values()), history
    expected = truth(tmp_path)
    assert runs_table(tmp_path)["input"] == expected["records"], "every line of Bronze in exactly one run's report"
    assert gold_counts(tmp_path) == (expected["gold"], expected["gold"])
    assert assert_readers_agree(tmp_path)["gold"] == expected["gold"]
