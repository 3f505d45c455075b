"""ReportStatus: the run's final status, counts and timings, written as the run manifest."""

from __future__ import annotations

import json
from datetime import datetime

from iotpipe.bronze import IGNORED_NOTES_DIR
from iotpipe.models import MAX_EXAMPLES, RunPlan, RunReport, StepAssessment, Verification
from iotpipe.quality import JUDGED, evaluate, format_breach, status_with_quality
from iotpipe.storage import Storage, join


def run_error(error: dict | None, verify_error: dict | None, drain: dict | None) -> dict | None:
    """The first thing that went wrong: the run's, VerifyGold's, or at the end the hand-over's or
    the lease's (a run that could not release or lost its lease is not a success)."""
    drain = drain or {}
    if error or verify_error:
        return error or verify_error
    if drain.get("follow_up_error"):  # data waits for a run that could not be started
        return drain["follow_up_error"]
    if drain.get("error"):
        return {"Error": "LeaseNotReleased", "Cause": "ReleaseLease failed; the lease is freed when it expires: "
                + str(drain["error"].get("Cause", ""))[:1000]}  # fmt: skip
    if drain.get("released") == "lost":
        return {"Error": "LeaseLost", "Cause": drain.get("reason", "the lease was lost before the run finished")}
    return None


def final_status(
    error: dict | None,
    assessment: StepAssessment | None,
    verification: Verification | None,
    deferred: bool = False,
    nothing_to_do: bool = False,
) -> str:
    """FAILED unless verified; a verified run that cannot account for every record (counts that
    do not reconcile, or a batch without a ledger entry) is UNRECONCILED, never SUCCEEDED."""
    if deferred and not error:
        return "DEFERRED"
    if nothing_to_do and not error:
        return "NOTHING_TO_DO"
    if error or verification is None or not verification.ok:
        return "FAILED"
    if not verification.reconciliation.get("reconciles", False):
        return "UNRECONCILED"
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
    ignored: dict | None = None,
    nothing_to_do: bool = False,
) -> RunReport:
    by_reason = dict(verification.quarantined_by_reason) if verification else {}
    records = {
        "input": verification.ledger["input_rows"] if verification else 0,
        "gold": verification.gold.new_rows if verification else 0,
        "quarantined": verification.quarantine.new_rows if verification else 0,
        "duplicates": verification.ledger["duplicates"] if verification else 0,
    }
    status = final_status(error, assessment, verification, deferred, nothing_to_do)
    breaches = evaluate(records, by_reason, plan.quality) if status in JUDGED else []
    seconds = None
    if started_at:
        seconds = round((now - datetime.fromisoformat(started_at.replace("Z", "+00:00"))).total_seconds(), 3)
    return RunReport(
        run_id=plan.run_id,
        status=status_with_quality(status, breaches, plan.quality),
        trigger=plan.trigger,
        records=records,
        quarantined_by_reason=dict(sorted(by_reason.items())),
        gold_partitions=verification.gold.partitions if verification else 0,
        reconciliation=verification.reconciliation if verification else {},
        ignored_objects=ignored or {},
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
        manifest=manifest_uri(plan),
        quality_breaches=breaches,
        quality_policy=plan.quality,
    )


def collect_ignored(storage: Storage, runs_uri: str, run_id: str, checkpoint_uri: str) -> dict:
    """Add up the Spark job's notes of Bronze objects it does not read or could not read in full
    (`<checkpoint>/ignored/`) not reported yet, then file them under this run
    (`<runs>/ignored-reported/<run_id>/`), so each note is reported once and the listing stays as
    small as what arrived since the last report. Notes already filed under this run count too: a
    retried ReportStatus reports what its first call filed."""
    total, by_reason, examples = 0, {}, []
    filed = join(runs_uri, f"{IGNORED_NOTES_DIR}-reported", run_id)
    for directory, file_them in ((filed, False), (join(checkpoint_uri, IGNORED_NOTES_DIR), True)):
        for info in storage.list(directory + "/"):
            if not info.uri.endswith(".json"):
                continue
            note = json.loads(storage.read_bytes(info.uri))
            total += int(note.get("count", 0))
            for reason, count in note.get("by_reason", {}).items():
                by_reason[reason] = by_reason.get(reason, 0) + int(count)
            examples.extend(note.get("examples", [])[: max(0, MAX_EXAMPLES - len(examples))])
            if file_them:
                storage.move(info.uri, join(filed, info.uri.rsplit("/", 1)[-1]))
    return {"count": total, "by_reason": dict(sorted(by_reason.items())), "examples": examples} if total else {}


def manifest_uri(plan: RunPlan) -> str:
    return join(plan.lake.runs, f"{plan.run_id}.json")


def written_report(plan: RunPlan, storage: Storage) -> RunReport | None:
    """The report a previous invocation for this execution already wrote: a retried ReportStatus
    (its first call did the work, its response was lost) returns it and counts nothing again."""
    uri = manifest_uri(plan)
    if storage.stat(uri) is None:
        return None
    return RunReport.model_validate(json.loads(storage.read_bytes(uri))["report"])


def write_manifest(report: RunReport, verification: Verification | None, storage: Storage) -> None:
    """The run manifest: the report and the verification's totals; the verification document
    (per partition and per batch) is beside it, at `verification.document`."""
    document = {
        "report": report.model_dump(),
        "verification": verification.model_dump(mode="json") if verification else None,
    }
    storage.write_bytes(report.manifest, json.dumps(document, indent=2, sort_keys=True).encode())


def summary_line(report: RunReport) -> str:
    r = report.records
    line = (
        f"iotpipe run {report.run_id}: {report.status} - input {r['input']:,}, gold {r['gold']:,}, "
        f"quarantined {r['quarantined']:,}, duplicates {r['duplicates']:,}"
    )
    if report.status == "UNRECONCILED":
        rec = report.reconciliation
        line += f" (unaccounted {rec.get('difference', 0):,}, ledger complete: {rec.get('ledger_complete')})"
    if report.ignored_objects.get("count"):
        line += f", ignored objects {report.ignored_objects['count']:,}"
    if report.quality_breaches:
        line += "; quality: " + ", ".join(format_breach(breach) for breach in report.quality_breaches)
    return line
