"""AssessStepFailure: decide from evidence what a FAILED EMR step really left behind.

An EMR step can end FAILED although Spark committed all its output (the driver failed after the
last commit, YARN lost the application master, the step's wrapper timed out). The EMR failure
details are often missing or 'Unknown Error', so the verdict rests on the checkpoint and the
sinks' `_spark_metadata`, never on ignoring the error:

- complete: the attempt's run summary exists (the job writes it only after both availableNow
  queries finished: everything present at the attempt's start was taken), no batch is planned
  but uncommitted, and each sink's log has the last committed batch. Continue, flagged.
  Bronze is never listed: data that lands later raises an S3 event that marks the lease
  pending, and ReleaseLease drains it.
- partial: the attempt made progress (a batch committed, or a new batch planned, since it
  started) but stopped short. Resume from the checkpoint while attempts remain. A batch that was
  already planned and uncommitted before the attempt, and still is, is no progress: a batch
  that cannot commit (a poison batch) costs one resume, not every attempt.
- failed: no progress (a persistent error: resuming would fail again), inconsistent evidence,
  or no attempts left.
"""

from __future__ import annotations

import json
from typing import Any

from iotpipe.models import RunPlan, SparkAttempt, StepAssessment
from iotpipe.planning import committed_batches, planned_batches, spark_attempt
from iotpipe.settings import Settings
from iotpipe.sink_log import METADATA_DIR, SINKS, query_checkpoint, read_checkpoint
from iotpipe.storage import Storage, join


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


def attempt_summary_uri(checkpoint_uri: str, attempt_run_id: str) -> str:
    """The job writes `<checkpoint>/runs/<attempt run id>.json` only after its query finished."""
    return join(checkpoint_uri, "runs", f"{attempt_run_id}.json")


def _sink_has_batch(storage: Storage, sink_uri: str, batch: int) -> bool:
    directory = join(sink_uri, METADATA_DIR)
    return any(storage.stat(join(directory, name)) is not None for name in (str(batch), f"{batch}.compact"))


def gather_evidence(storage: Storage, plan: RunPlan, attempt: SparkAttempt) -> dict:
    """What the checkpoint, the sink logs and the attempt's summary say, read by key: bounded
    whatever the history (offsets/commits listings are bounded by Spark's retention)."""
    summary = attempt_summary_uri(plan.lake.checkpoint, attempt.run_id)
    evidence: dict = {"attempt": attempt.run_id, "summary_written": storage.stat(summary) is not None, "queries": {}}
    state = read_checkpoint(storage, query_checkpoint(plan.lake.checkpoint))
    for query, sink in zip(SINKS, (plan.lake.gold, plan.lake.quarantine)):
        committed = state.last_committed
        evidence["queries"][query] = {
            "last_planned": state.last_planned,
            "last_committed": committed,
            "uncommitted_batch": state.has_uncommitted_batch,
            "committed_in_sink_log": committed is None or _sink_has_batch(storage, sink, committed),
        }
    return evidence


def _latest(batch: int | None) -> int:
    return -1 if batch is None else batch


def _consistent(query: dict) -> bool:
    """A committed batch must be in the sink log (Spark logs the sink before the commit)."""
    return query["committed_in_sink_log"]


def assess_step_failure(
    error: Any, plan: RunPlan, attempt: SparkAttempt, settings: Settings, storage: Storage
) -> StepAssessment:
    failure = parse_step_failure(error)
    evidence = gather_evidence(storage, plan, attempt)
    queries = evidence["queries"].values()
    if not all(_consistent(q) for q in queries):
        return StepAssessment(
            verdict="failed",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="inconsistent evidence: a committed batch is missing from a sink log",
        )
    if evidence["summary_written"] and all(not q["uncommitted_batch"] for q in queries):
        return StepAssessment(
            verdict="complete",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="every Bronze file is committed in both sinks: the step failed after its output "
            "(the query finished, nothing planned is uncommitted)",
        )
    progressed = any(
        _latest(q["last_committed"]) > attempt.committed_before.get(name, -1)
        or _latest(q["last_planned"]) > attempt.planned_before.get(name, -1)
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
        plan.run_id,
        attempt.number + 1,
        settings,
        plan.fault_injection,
        planned_batches(storage, plan.lake.checkpoint),
        committed_batches(storage, plan.lake.checkpoint),
    )
    return StepAssessment(
        verdict="partial",
        resume=True,
        failure=failure,
        evidence=evidence,
        next_attempt=next_attempt,
        reason=f"partial output: resuming from the checkpoint (attempt {next_attempt.number})",
    )
