"""AssessStepFailure: decide from evidence what a failed Spark job really left behind.

An EMR step can end FAILED although Spark committed all its output (the driver failed after the
last commit, YARN lost the application master, the step's wrapper timed out); so can an EMR
Serverless job run end FAILED, CANCELLED or past its timeout. The failure details are often
missing or 'Unknown Error', so on both runtimes the verdict rests on the checkpoint and the
tables' commits, never on ignoring the error:

- complete: the attempt's run summary exists (the job writes it only after its availableNow
  query finished: everything present at the attempt's start was taken), no batch is planned
  but uncommitted, and every table holds the last committed batch's commit. Continue, flagged.
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

from iotpipe.lake.checkpoint import STREAMING_QUERY, query_checkpoint, query_id, read_checkpoint
from iotpipe.lake.iceberg import TableNotFound, read_metadata
from iotpipe.lake.storage import Storage, join
from iotpipe.lake.tables import ICEBERG_TABLES
from iotpipe.run.models import RunPlan, SparkAttempt, StepAssessment
from iotpipe.run.plan import committed_batches, planned_batches, spark_attempt
from iotpipe.run.settings import Settings


def parse_step_failure(error: Any) -> dict:
    """Pull what we can from a Catch's {Error, Cause}; never raise, whatever the Cause holds.

    The Cause of a failed EMR step holds the step (its Status.FailureDetails); a failed or
    cancelled EMR Serverless job run's holds the job run (its State and StateDetails), at the top
    or under JobRun, in Step Functions' PascalCase or the API's camelCase. Neither decides the
    verdict: they are what the report shows beside it."""
    if not isinstance(error, dict):
        return {"error": None, "reason": None, "message": None, "log_file": None, "raw_cause": repr(error)[:2000]}
    raw = error.get("Cause")
    details: dict = {}
    job_run: dict = {}
    try:
        cause = json.loads(raw) if isinstance(raw, str) else raw
        step = cause.get("Step", cause) if isinstance(cause, dict) else {}
        status = step.get("Status", {}) if isinstance(step, dict) else {}
        details = status.get("FailureDetails", {}) if isinstance(status, dict) else {}
        if not isinstance(details, dict):
            details = {}
        job_run = _job_run(cause)
    except (ValueError, TypeError, AttributeError):
        details = {}
    parsed = {
        "error": error.get("Error") if isinstance(error.get("Error"), str) else None,
        "reason": details.get("Reason") or job_run.get("statedetails"),
        "message": details.get("Message"),
        "log_file": details.get("LogFile"),
        "raw_cause": raw[:2000] if isinstance(raw, str) else None,
    }
    if job_run.get("jobrunid"):
        parsed |= {"job_run_id": str(job_run["jobrunid"]), "job_run_state": str(job_run.get("state") or ""),
                   "application_id": str(job_run.get("applicationid") or "")}  # fmt: skip
    return parsed


def _job_run(cause: Any) -> dict:
    """An EMR Serverless job run in a Cause, its keys lower-cased; {} if there is none."""
    if not isinstance(cause, dict):
        return {}
    lowered = {str(key).lower(): value for key, value in cause.items()}
    nested = lowered.get("jobrun")
    if isinstance(nested, dict):
        lowered = {str(key).lower(): value for key, value in nested.items()}
    return lowered if isinstance(lowered.get("jobrunid"), str) else {}


def attempt_summary_uri(checkpoint_uri: str, attempt_run_id: str) -> str:
    """The job writes `<checkpoint>/runs/<attempt run id>.json` only after its query finished."""
    return join(checkpoint_uri, "runs", f"{attempt_run_id}.json")


def tables_holding(storage: Storage, glue, database: str, query: str | None, batch: int) -> dict[str, bool]:
    """Whether each table holds the batch's commit (the query commits a batch after all of them)."""
    holding = {}
    for table in ICEBERG_TABLES:
        try:
            holding[table.name] = batch in read_metadata(storage, glue, database, table.name).batches(query or "")
        except TableNotFound:
            holding[table.name] = False
    return holding


def gather_evidence(storage: Storage, plan: RunPlan, attempt: SparkAttempt, glue, database: str) -> dict:
    """What the checkpoint, the tables and the attempt's summary say, read by key: bounded whatever
    the history (offsets/commits listings are bounded by Spark's retention, metadata by expiry)."""
    summary = attempt_summary_uri(plan.lake.checkpoint, attempt.run_id)
    evidence: dict = {"attempt": attempt.run_id, "summary_written": storage.stat(summary) is not None, "queries": {}}
    state = read_checkpoint(storage, query_checkpoint(plan.lake.checkpoint))
    committed = state.last_committed
    holding = (
        {}
        if committed is None
        else tables_holding(storage, glue, database, query_id(storage, plan.lake.checkpoint), committed)
    )
    evidence["queries"][STREAMING_QUERY] = {
        "last_planned": state.last_planned,
        "last_committed": committed,
        "uncommitted_batch": state.has_uncommitted_batch,
        "tables_holding_last_commit": holding,
    }
    return evidence


def _latest(batch: int | None) -> int:
    return -1 if batch is None else batch


def _consistent(query: dict) -> bool:
    """A committed batch must be in every table (the job commits them before the query commits)."""
    return all(query["tables_holding_last_commit"].values())


def assess_step_failure(
    error: Any, plan: RunPlan, attempt: SparkAttempt, settings: Settings, storage: Storage, glue
) -> StepAssessment:
    failure = parse_step_failure(error)
    evidence = gather_evidence(storage, plan, attempt, glue, settings.catalog_database)
    queries = evidence["queries"].values()
    if not all(_consistent(q) for q in queries):
        return StepAssessment(
            verdict="failed",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="inconsistent evidence: the query committed a batch that a table does not hold",
        )
    if evidence["summary_written"] and all(not q["uncommitted_batch"] for q in queries):
        return StepAssessment(
            verdict="complete",
            resume=False,
            failure=failure,
            evidence=evidence,
            reason="every Bronze file is committed in every table: the step failed after its output "
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
        plan.execution_id,
    )
    return StepAssessment(
        verdict="partial",
        resume=True,
        failure=failure,
        evidence=evidence,
        next_attempt=next_attempt,
        reason=f"partial output: resuming from the checkpoint (attempt {next_attempt.number})",
    )
