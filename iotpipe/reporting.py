"""ReportStatus: the run's final status, counts and timings, written as the run manifest."""

from __future__ import annotations

import json
from datetime import datetime

from iotpipe.models import RunPlan, RunReport, StepAssessment, Verification
from iotpipe.storage import Storage, join


def final_status(
    error: dict | None, assessment: StepAssessment | None, verification: Verification | None, deferred: bool = False
) -> str:
    if deferred and not error:
        return "DEFERRED"
    if error or verification is None or not verification.ok:
        return "FAILED"
    if assessment is not None and assessment.verdict == "complete":
        return "SUCCEEDED_WITH_STEP_ERROR"
    return "SUCCEEDED"


def build_report(
    plan: RunPlan,
    verification: Verification | None,
    assessment: StepAssessment | None,
    error: dict | None,
    attempts: int,
    started_at: str | None,
    now: datetime,
    deferred: bool = False,
    drain_rounds: int = 0,
) -> RunReport:
    by_reason: dict[str, int] = {}
    if verification:
        for partition, rows in verification.quarantine.rows_by_partition.items():
            reason = partition.split("=", 1)[1] if "=" in partition else partition
            by_reason[reason] = by_reason.get(reason, 0) + rows
    records = {
        "input": verification.ledger["input_rows"] if verification else 0,
        "gold": verification.gold.new_rows if verification else 0,
        "quarantined": verification.quarantine.new_rows if verification else 0,
        "duplicates": verification.ledger["duplicates"] if verification else 0,
    }
    seconds = None
    if started_at:
        seconds = round((now - datetime.fromisoformat(started_at.replace("Z", "+00:00"))).total_seconds(), 3)
    return RunReport(
        run_id=plan.run_id,
        status=final_status(error, assessment, verification, deferred),
        trigger=plan.trigger,
        records=records,
        quarantined_by_reason=dict(sorted(by_reason.items())),
        gold_partitions=len(verification.gold.rows_by_partition) if verification else 0,
        attempts=attempts,
        drain_rounds=drain_rounds,
        step_error=assessment.failure | {"verdict": assessment.verdict, "reason": assessment.reason}
        if assessment
        else None,
        error=error,
        spark_logs=(assessment.failure.get("log_file") if assessment else None),
        started_at=started_at,
        finished_at=now.isoformat(timespec="seconds"),
        seconds=seconds,
        manifest=join(plan.lake.runs, f"{plan.run_id}.json"),
    )


def write_manifest(report: RunReport, verification: Verification | None, storage: Storage) -> None:
    document = {
        "report": report.model_dump(),
        "verification": verification.model_dump(mode="json") if verification else None,
    }
    storage.write_bytes(report.manifest, json.dumps(document, indent=2, sort_keys=True).encode())


def summary_line(report: RunReport) -> str:
    r = report.records
    return (
        f"iotpipe run {report.run_id}: {report.status} - input {r['input']:,}, gold {r['gold']:,}, "
        f"quarantined {r['quarantined']:,}, duplicates {r['duplicates']:,}"
    )
