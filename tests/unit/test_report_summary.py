"""The summary line of a run report (the SNS message's first line) and the link it carries; what
table maintenance did, as the report and `iotpipe run` show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotpipe.run.models import RunReport, StepAssessment
from iotpipe.run.report import console_url, format_duration, needs_attention, spark_identifiers, summary_line

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:{partition}:states:{region}:123456789012:execution:iotpipe-pipeline:run-1"


def report(**overrides) -> RunReport:
    values = dict(run_id="run-1", status="SUCCEEDED", trigger="manual", gold_partitions=1, attempts=1,
                  records={"input": 1200, "gold": 1000, "quarantined": 150, "duplicates": 50},
                  quarantined_by_reason={}, finished_at="2024-01-01T00:04:05+00:00", seconds=245.4,
                  manifest="s3://artifacts/runs/run-1.json")  # fmt: skip
    return RunReport(**{**values, **overrides})


@pytest.mark.parametrize(
    ("partition", "region", "host"),
    [
        ("aws", "eu-west-1", "https://eu-west-1.console.aws.amazon.com"),
        ("aws-cn", "cn-north-1", "https://cn-north-1.console.amazonaws.cn"),
        ("aws-us-gov", "us-gov-west-1", "https://console.amazonaws-us-gov.com"),
    ],
)
def test_the_console_link_is_the_executions_page_in_its_partition_and_region(partition, region, host):
    arn = ARN.format(partition=partition, region=region)
    assert console_url(arn) == f"{host}/states/home?region={region}#/v2/executions/details/{arn}"


@pytest.mark.parametrize("arn", ["", "run-1", "arn:aws:states:us-east-1:123456789012:stateMachine:iotpipe-pipeline",
                                 "arn:aws-iso:states:us-iso-east-1:123456789012:execution:m:run-1"])  # fmt: skip
def test_anything_but_an_execution_arn_of_a_known_partition_gets_no_link(arn):
    assert console_url(arn) is None


def test_the_summary_line_has_status_counts_duration_and_link_on_one_line():
    arn = ARN.format(partition="aws", region="us-east-1")
    line = summary_line(report(), arn)
    assert line == (
        "iotpipe run run-1: SUCCEEDED - input 1,200, gold 1,000, quarantined 150, duplicates 50, in 4m 05s - "
        f"https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{arn}"
    )
    assert "\n" not in line


def test_without_a_start_time_or_an_arn_the_summary_says_neither():
    assert summary_line(report(seconds=None)).endswith("duplicates 50")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (4.4, "4s"), (65, "1m 05s"), (7384, "2h 03m 04s")])
def test_durations_read_largest_unit_first(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("status", ["FAILED", "UNRECONCILED", "SUCCEEDED_WITH_STEP_ERROR", "A_STATUS_ADDED_LATER"])
def test_every_status_but_succeeded_and_deferred_needs_attention(status):
    assert needs_attention(status)
    assert not needs_attention("SUCCEEDED") and not needs_attention("DEFERRED")


# ---------------------------------------------------------------- what table maintenance did, in the report
MAINTAINED = {"run_id": "run-1", "seconds": 3.25, "tables": {
    "gold": {"files_before": 10, "files_rewritten": 4, "files_written": 1, "files_after": 7},
    "quarantine": {"files_before": 2, "files_rewritten": 0, "files_written": 0, "files_after": 2}}}  # fmt: skip


def report_event(tmp_path, maintenance):
    from functions.report_status.app import ReportEvent
    from iotpipe.lake.storage import LocalStorage
    from iotpipe.run.plan import plan_run
    from iotpipe.run.settings import Settings

    settings = Settings.for_local_lake(str(tmp_path), spark_job_uri=str(ROOT / "spark" / "job.py"))
    plan = plan_run({"generate": False}, "run-1", settings, LocalStorage())
    return ReportEvent(execution_id="e", plan=plan, maintenance=maintenance)


@pytest.mark.parametrize(
    ("step", "written", "expected"),
    [
        ({"step_id": "s-1"}, MAINTAINED, MAINTAINED),  # the step ran: what spark/maintain.py wrote
        ({"step_id": "s-1"}, None, None),  # it ran and wrote nothing: nothing is claimed
        (None, MAINTAINED, None),  # not maintained this time (ShouldMaintain): an older outcome is not this run's
        (
            {"Error": "States.TaskFailed", "Cause": "x" * 5000},
            MAINTAINED,
            {"error": "States.TaskFailed", "cause": "x" * 1000},
        ),  # fmt: skip
    ],
)
def test_the_report_says_what_maintenance_wrote_or_why_its_step_failed(tmp_path, step, written, expected):
    from functions.report_status.app import maintenance_outcome
    from iotpipe.lake.storage import LocalStorage
    from iotpipe.lake.tables import maintenance_outcome_uri

    event = report_event(tmp_path, step)
    if written is not None:
        LocalStorage().write_bytes(maintenance_outcome_uri(event.plan.lake.runs, "run-1"), json.dumps(written).encode())
    assert maintenance_outcome(event, LocalStorage()) == expected


def test_iotpipe_run_shows_what_maintenance_did_per_table_or_its_error():
    from iotpipe.cli import maintenance_line

    assert maintenance_line(MAINTAINED) == (
        "gold: 4 files merged into 1, 10 -> 7 files; quarantine: 0 files merged into 0, 2 -> 2 files; in 3.2 s"
    )
    failed = maintenance_line({"error": "States.TaskFailed", "cause": "the step was cancelled"})
    assert failed == "FAILED (States.TaskFailed): the step was cancelled"


# ---------------------------------------------------------------- where the Spark job ran
class Plan:
    def __init__(self, runtime: str) -> None:
        self.runtime = runtime


def test_the_report_names_the_cluster_on_emr_on_ec2():
    found = spark_identifiers(Plan("emr-on-ec2"), ARN.format(partition="aws", region="eu-west-1"),
                              {"cluster_id": "j-1", "transient": True}, None, None)  # fmt: skip
    assert found == {"runtime": "emr-on-ec2", "cluster_id": "j-1"}


@pytest.mark.parametrize(
    "job_run",
    [
        {"ApplicationId": "00app", "JobRunId": "00run", "Arn": "arn"},
        {"JobRun": {"applicationId": "00app", "jobRunId": "00run"}},
    ],
)
def test_the_report_links_the_job_run_on_emr_serverless_whatever_the_results_shape(job_run):
    found = spark_identifiers(Plan("emr-serverless"), ARN.format(partition="aws", region="eu-west-1"), None,
                              job_run, None)  # fmt: skip
    assert (found["application_id"], found["job_run_id"]) == ("00app", "00run")
    assert found["job_run_link"] == ("https://eu-west-1.console.aws.amazon.com/emr/home?region=eu-west-1"
                                     "#/serverless/applications/00app/job-runs/00run")  # fmt: skip


def test_a_job_run_that_failed_is_named_from_its_failure():
    failure = {"job_run_id": "00run", "application_id": "00app", "job_run_state": "FAILED"}
    failed = StepAssessment(verdict="failed", resume=False, reason="no progress", evidence={}, failure=failure)
    found = spark_identifiers(Plan("emr-serverless"), "not-an-arn", None, None, failed)
    # No link: no region to link in.
    assert found == {"runtime": "emr-serverless", "application_id": "00app", "job_run_id": "00run"}


def test_iotpipe_run_says_which_objects_it_did_not_read_and_why():
    """A run that left objects unread (another format, gzip content without a suffix, rewritten after
    it was read) says so beside its counts, not only in the manifest."""
    from iotpipe.cli import format_report

    ignored = {"count": 2, "by_reason": {"changed-after-read": 1, "other-format": 1},
               "examples": ["s3://bronze/raw/a.csv", "s3://bronze/raw/b.jsonl"]}  # fmt: skip
    text = format_report(report(ignored_objects=ignored).model_dump())
    assert "objects not read         2 (changed-after-read 1, other-format 1)" in text
    assert "s3://bronze/raw/a.csv" in text and "s3://bronze/raw/b.jsonl" in text
    assert "objects not read" not in format_report(report().model_dump())
