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
