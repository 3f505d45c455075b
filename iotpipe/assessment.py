"""AssessStepFailure: decide from evidence what a FAILED EMR step really left behind.

An EMR step can end FAILED although Spark committed all its output (the driver failed after the
last commit, YARN lost the application master, the step's wrapper timed out). The EMR failure
details are often missing or 'Unknown Error', so the verdict rests on the checkpoint and the
sinks' `_spark_metadata`, never on ignoring the error:

- complete: every Bronze file is in both queries' source logs, no batch is planned but
  uncommitted, and each sink's log has every committed batch. Continue, flagged.
- partial: the attempt made progress (new planned or committed batches) but stopped short.
  Resume from the checkpoint while attempts remain.
- failed: no progress (a persistent error: resuming would fail again), inconsistent evidence,
  or no attempts left.
"""

from __future__ import annotations

import json
from typing import Any

from iotpipe.models import RunPlan, SparkAttempt, StepAssessment
from iotpipe.planning import QUERIES, planned_batches, spark_attempt
from iotpipe.settings import Settings
from iotpipe.sink_log import committed_batches, read_checkpoint, source_files
from iotpipe.storage import Storage, join

BRONZE_SUFFIX = ".jsonl"


def parse_step_failure(error: Any) -> dict:
    """Pull what we can from a Catch's {Error, Cause}; never raise, whatever the Cause holds."""
    if not isinstance(error, dict):
        return {"error": None, "reason": None, "message": None, "log_file": None, "raw_cause": repr(error)[:2000]}
    raw = error.get("Cause")
    details: dict = {}
    try:
        cause = json.loads(raw) if isinstance(raw, str) else raw
        step = cause.get("Step", cause) if isinstance(cause, dict) else {}
        status = step.get("Status", {}) if isinstance(step, dict) else {}
        details = status.get("FailureDetails", {}) if isinstance(status, dict) else {}
        if not isinstance(details, dict):
            details = {}
    except (ValueError, TypeError, AttributeError):
        details = {}
    return {
        "error": error.get("Error") if isinstance(error.get("Error"), str) else None,
        "reason": details.get("Reason"),
        "message": details.get("Message"),
        "log_file": details.get("LogFile"),
        "raw_cause": raw[:2000] if isinstance(raw, str) else None,
    }


def _normalise_source(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path.replace("s3a://", "s3://", 1)


def bronze_files(storage: Storage, bronze_uri: str) -> set[str]:
    """The Bronze data objects Spark reads: *.jsonl, not under hidden or '_' folders."""
    return {
        _normalise_source(info.uri)
        for info in storage.list(bronze_uri)
        if info.uri.endswith(BRONZE_SUFFIX)
        and "/_" not in info.uri[len(bronze_uri) :]
        and "/." not in info.uri[len(bronze_uri) :]
    }


def unprocessed_bronze(storage: Storage, bronze_uri: str, checkpoint_uri: str) -> set[str]:
    """Bronze objects that either query has not taken into a batch yet."""
    present = bronze_files(storage, bronze_uri)
    missing: set[str] = set()
    for query in QUERIES:
        seen = {_normalise_source(p) for p in source_files(storage, join(checkpoint_uri, query))}
        missing |= present - seen
    return missing


def gather_evidence(storage: Storage, plan: RunPlan) -> dict:
    present = bronze_files(storage, plan.lake.bronze)
    evidence: dict = {"bronze_files": len(present), "queries": {}}
    for query, sink in zip(QUERIES, (plan.lake.gold, plan.lake.quarantine)):
        checkpoint = join(plan.lake.checkpoint, query)
        state = read_checkpoint(storage, checkpoint)
        sink_batches = committed_batches(storage, join(sink, "_spark_metadata"))
        seen = {_normalise_source(p) for p in source_files(storage, checkpoint)}
        evidence["queries"][query] = {
            "last_planned": state.last_planned,
            "last_committed": state.last_committed,
            "uncommitted_batch": state.has_uncommitted_batch,
            "sink_last_batch": sink_batches[-1] if sink_batches else None,
            "unprocessed_bronze_files": len(present - seen),
        }
    return evidence


def _consistent(query: dict) -> bool:
    """A committed batch must be in the sink log (Spark logs the sink before the commit)."""
    committed, sink = query["last_committed"], query["sink_last_batch"]
    return committed is None or (sink is not None and sink >= committed)


def assess_step_failure(
    error: Any, plan: RunPlan, attempt: SparkAttempt, settings: Settings, storage: Storage
) -> StepAssessment:
    failure = parse_step_failure(error)
    evidence = gather_evidence(storage, plan)
    queries = evidence["queries"].values()
    if not all(_consistent(q) for q in queries):
        return StepAssessment(
            verdict="failed",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="inconsistent evidence: a committed batch is missing from a sink log",
        )
    if all(not q["uncommitted_batch"] and q["unprocessed_bronze_files"] == 0 for q in queries):
        return StepAssessment(
            verdict="complete",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="every Bronze file is committed in both sinks: the step failed after its output",
        )
    progressed = any(
        q["uncommitted_batch"]
        or (q["last_planned"] if q["last_planned"] is not None else -1) > attempt.planned_before.get(name, -1)
        for name, q in evidence["queries"].items()
    )
    if not progressed:
        return StepAssessment(
            verdict="failed",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="the attempt made no progress: resuming would fail the same way",
        )
    attempts_left = plan.max_resume_attempts - (attempt.number - 1)
    if attempts_left <= 0:
        return StepAssessment(
            verdict="failed",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason=f"partial output and no resume attempts left ({plan.max_resume_attempts} allowed)",
        )
    next_attempt = spark_attempt(
        plan.run_id, attempt.number + 1, settings, plan.fault_injection, planned_batches(storage, plan.lake.checkpoint)
    )
    return StepAssessment(
        verdict="partial",
        resume=True,
        failure=failure,
        evidence=evidence,
        next_attempt=next_attempt,
        reason=f"partial output: resuming from the checkpoint (attempt {next_attempt.number})",
    )
