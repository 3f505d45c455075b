"""A Catch's Cause is whatever EMR said, often nothing useful: parsing it never raises."""

from __future__ import annotations

import json

import pytest

from iotpipe.run.assess import parse_step_failure

FULL = {
    "Error": "States.TaskFailed",
    "Cause": json.dumps(
        {
            "Step": {
                "Status": {
                    "State": "FAILED",
                    "FailureDetails": {
                        "Reason": "Unknown Error.",
                        "Message": "driver exited",
                        "LogFile": "s3://logs/j-1/steps/s-1/stderr.gz",
                    },
                }
            }
        }
    ),
}


def test_failure_details_are_read_when_present():
    parsed = parse_step_failure(FULL)
    assert (parsed["error"], parsed["reason"], parsed["log_file"]) == (
        "States.TaskFailed",
        "Unknown Error.",
        "s3://logs/j-1/steps/s-1/stderr.gz",
    )


@pytest.mark.parametrize(
    "error",
    [
        None,
        "States.TaskFailed",
        [],
        {},
        {"Error": "States.TaskFailed"},
        {"Error": "States.TaskFailed", "Cause": "Unknown Error"},
        {"Error": "States.TaskFailed", "Cause": "{not json"},
        {"Error": "States.TaskFailed", "Cause": "[1, 2]"},
        {"Error": "States.TaskFailed", "Cause": json.dumps({"Step": "gone"})},
        {"Error": "States.TaskFailed", "Cause": json.dumps({"Step": {"Status": {"FailureDetails": "n/a"}}})},
        {"Error": 42, "Cause": 17},
    ],
)
def test_a_malformed_cause_never_raises(error):
    parsed = parse_step_failure(error)
    assert set(parsed) == {"error", "reason", "message", "log_file", "raw_cause"}
    assert parsed["reason"] is None and parsed["log_file"] is None


# An EMR Serverless job run's failure: the job run is the Cause, at the top or under JobRun, in
# Step Functions' PascalCase or the API's camelCase.
JOB_RUN = {"ApplicationId": "00app", "JobRunId": "00run", "State": "CANCELLED",
           "StateDetails": "Job run was cancelled."}  # fmt: skip


@pytest.mark.parametrize(
    "cause",
    [JOB_RUN, {"JobRun": JOB_RUN}, {"jobRun": {k[0].lower() + k[1:]: v for k, v in JOB_RUN.items()}}],
)
def test_a_failed_job_runs_state_and_ids_are_read_in_any_spelling(cause):
    parsed = parse_step_failure({"Error": "States.TaskFailed", "Cause": json.dumps(cause)})
    assert (parsed["job_run_id"], parsed["job_run_state"], parsed["application_id"]) == ("00run", "CANCELLED", "00app")
    assert parsed["reason"] == "Job run was cancelled."


def test_a_timed_out_job_runs_state_has_no_job_run_and_says_so():
    parsed = parse_step_failure({"Error": "States.Timeout", "Cause": "the state timed out"})
    assert parsed["error"] == "States.Timeout" and "job_run_id" not in parsed
