"""Runs whose execution ended before their report (stopped, timed out, the machine running them
gone) are reported by the next run that reports (iotpipe.run.unreported): found through the seen-id
store's run tags, their end asked of Step Functions (moto's, with real executions), their batches
verified as any run's and written once as an INTERRUPTED report. A run still running is left to
write its own, and the point up to which every run has a report moves only past reported runs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from iotpipe.lake.iceberg import RUN_ID
from iotpipe.lake.storage import LocalStorage, join
from iotpipe.lake.tables import RUNS, SEEN_IDS, run_manifest_uri, run_rows_uri, sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.history import read_history
from iotpipe.run.models import RunReport
from iotpipe.run.plan import plan_run
from iotpipe.run.report import build_report, write_manifest
from iotpipe.run.settings import Settings
from iotpipe.run.unreported import ALL_REPORTED, report_dead_runs
from iotpipe.run.verify import verify_gold
from tests.lakes import JobCommits

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=timezone.utc)
OSLO = ("2026-01-01", "Oslo")
# A machine whose executions wait: they run until stopped.
WAITS = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}})


class Pipeline:
    """A local lake, moto's Step Functions with the pipeline's machine, and the runs' executions."""

    def __init__(self, root: Path) -> None:
        permissive = {"quality_max_quarantine_ratio": 1.0, "quality_max_duplicate_ratio": 1.0}
        self.settings = Settings.for_local_lake(str(root), spark_job_uri=str(ROOT / "spark" / "job.py"), **permissive)
        self.commits = JobCommits(self.settings)
        self.storage = LocalStorage()
        self.glue = LocalGlue(sqlite_path(self.settings.catalog_uri))
        self.sfn = boto3.client("stepfunctions", region_name="us-east-1")
        role = "arn:aws:iam::123456789012:role/pipeline"
        machine = self.sfn.create_state_machine(name="iotpipe-pipeline", definition=WAITS, roleArn=role)
        self.machine = machine["stateMachineArn"]
        self.executions: dict[str, str] = {}
        self.batch = -1

    def start(self, run_id: str) -> str:
        arn = self.sfn.start_execution(stateMachineArn=self.machine, name=run_id)["executionArn"]
        self.executions[run_id] = arn
        return arn

    def stop(self, run_id: str) -> None:
        self.sfn.stop_execution(executionArn=self.executions[run_id])

    def commit(self, run_id: str, rows: int, quarantined: int = 0, duplicates: int = 0, execution: str | None = None):
        self.batch += 1
        self.commits.commit_batch(self.batch, run_id, gold={OSLO: rows}, quarantined={"malformed_json": quarantined},
                                  duplicates=duplicates, execution=self.executions.get(run_id, "") if execution is None
                                  else execution)  # fmt: skip

    def plan(self, run_id: str):
        return plan_run({"generate": False}, run_id, self.settings, self.storage, execution_id=self.executions[run_id])

    def report_own(self, run_id: str) -> list[str]:
        """The run's ReportStatus: its own manifest, then the reports of runs that died before theirs."""
        plan = self.plan(run_id)
        verification = verify_gold(plan, self.storage, self.glue, self.settings.catalog_database)
        write_manifest(build_report(plan, verification, None, None, 1, None, NOW), verification, self.storage)
        return report_dead_runs(plan, self.storage, self.glue, self.settings.catalog_database, self.sfn, NOW)

    def manifest(self, run_id: str) -> dict | None:
        path = Path(run_manifest_uri(self.settings.runs_uri, run_id))
        return json.loads(path.read_text()) if path.exists() else None

    def all_reported_through(self) -> int | None:
        path = Path(join(self.settings.runs_uri, ALL_REPORTED))
        return json.loads(path.read_text())["timestamp_ms"] if path.exists() else None

    def commit_times(self, run_id: str) -> list[int]:
        """When the run's batches made their last commit, as an independent Iceberg reader sees it."""
        return sorted(
            s.timestamp_ms for s in self.commits.table(SEEN_IDS).snapshots() if s.summary.get(RUN_ID) == run_id
        )


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(variable, value)
    with mock_aws():
        yield Pipeline(tmp_path)


def test_a_run_whose_execution_ended_without_a_report_is_reported_as_interrupted_with_its_counts(pipeline):
    pipeline.start("run-a")
    pipeline.commit("run-a", rows=3, quarantined=1, duplicates=1)
    pipeline.commit("run-a", rows=2)
    pipeline.stop("run-a")  # stopped after its batches, before ReportStatus
    pipeline.start("run-b")
    pipeline.commit("run-b", rows=4)

    assert pipeline.report_own("run-b") == ["run-a"]

    manifest = pipeline.manifest("run-a")
    report = RunReport.model_validate(manifest["report"])
    assert (report.status, report.reported_by, report.error["Error"]) == ("INTERRUPTED", "run-b", "RunInterrupted")
    assert report.records == {"input": 7, "gold": 5, "quarantined": 1, "duplicates": 1}
    assert report.reconciliation["reconciles"] is True and manifest["verification"]["gold"]["batches"] == 2
    rows = Path(join(run_rows_uri(pipeline.settings.runs_uri, RUNS), "run-a.json")).read_text().splitlines()
    assert [(json.loads(r)["run_id"], json.loads(r)["status"]) for r in rows] == [("run-a", "INTERRUPTED")]
    assert [r.run_id for r in read_history(pipeline.storage, pipeline.settings.runs_uri)] == ["run-a"]
    assert RunReport.model_validate(pipeline.manifest("run-b")["report"]).records["input"] == 4, "b's own batch only"


def test_a_run_still_running_is_left_to_write_its_own_report(pipeline):
    pipeline.start("run-a")
    pipeline.commit("run-a", rows=3)  # run-a is still running (a driver that outlived its lease, say)
    pipeline.start("run-b")
    pipeline.commit("run-b", rows=1)
    assert pipeline.report_own("run-b") == []
    assert pipeline.manifest("run-a") is None


def test_a_run_step_functions_no_longer_knows_is_reported(pipeline):
    """A local engine that has gone, or an execution past Step Functions' retention."""
    gone = pipeline.machine.replace(":stateMachine:", ":execution:") + ":run-gone"
    pipeline.commit("run-gone", rows=2, execution=gone)
    pipeline.start("run-b")
    pipeline.commit("run-b", rows=1)
    assert pipeline.report_own("run-b") == ["run-gone"]
    assert pipeline.manifest("run-gone")["report"]["status"] == "INTERRUPTED"


def test_a_dead_runs_report_is_written_once(pipeline):
    pipeline.start("run-a")
    pipeline.commit("run-a", rows=3)
    pipeline.stop("run-a")
    pipeline.start("run-b")
    pipeline.commit("run-b", rows=1)
    assert pipeline.report_own("run-b") == ["run-a"]
    written = Path(run_manifest_uri(pipeline.settings.runs_uri, "run-a")).read_bytes()
    pipeline.start("run-c")
    pipeline.commit("run-c", rows=1)
    assert pipeline.report_own("run-c") == []
    assert Path(run_manifest_uri(pipeline.settings.runs_uri, "run-a")).read_bytes() == written


def test_every_run_has_a_report_up_to_the_marker_which_moves_only_past_reported_runs(pipeline):
    for run in ("run-a", "run-b"):
        pipeline.start(run)
        pipeline.commit(run, rows=2)
    pipeline.stop("run-a")  # run-b still runs: its report is its own to write
    pipeline.start("run-c")
    pipeline.commit("run-c", rows=1)

    assert pipeline.report_own("run-c") == ["run-a"]
    marker = pipeline.all_reported_through()
    assert max(pipeline.commit_times("run-a")) <= marker < min(pipeline.commit_times("run-b"))

    pipeline.stop("run-b")
    pipeline.start("run-d")
    pipeline.commit("run-d", rows=1)
    assert pipeline.report_own("run-d") == ["run-b"]
    assert pipeline.all_reported_through() >= max(pipeline.commit_times("run-c"))
    assert pipeline.manifest("run-b")["report"]["reported_by"] == "run-d"


def test_report_status_reports_the_dead_runs_it_found_beside_its_own(pipeline):
    from functions.report_status.app import lambda_handler
    from iotpipe.local.bindings import LocalLambdaContext
    from iotpipe.run import lambda_runtime

    pipeline.start("run-a")
    pipeline.commit("run-a", rows=3)
    pipeline.stop("run-a")
    pipeline.start("run-b")
    pipeline.commit("run-b", rows=2)
    plan = pipeline.plan("run-b")
    verification = verify_gold(plan, pipeline.storage, pipeline.glue, pipeline.settings.catalog_database)
    lambda_runtime.configure(pipeline.settings, pipeline.storage)
    lambda_runtime.clients.update(glue=pipeline.glue, stepfunctions=pipeline.sfn)
    event = {"execution_id": pipeline.executions["run-b"], "plan": plan.model_dump(),
             "verification": verification.model_dump(mode="json")}  # fmt: skip
    try:
        response = lambda_handler(event, LocalLambdaContext(function_name="report_status", aws_request_id="test"))
    finally:
        for service in ("glue", "stepfunctions"):
            lambda_runtime.clients.pop(service, None)
    assert (response["status"], response["reported_for"]) == ("SUCCEEDED", ["run-a"])
    assert pipeline.manifest("run-a")["report"]["records"]["gold"] == 3
