"""ReportStatus: the run's final status, counts and timings, written as the run manifest and as
rows of the run history tables; and the reports of earlier runs that died before theirs.
"""

from __future__ import annotations

import json
from datetime import datetime

from iotpipe.lake import tables
from iotpipe.lake.bronze import IGNORED_NOTES_DIR
from iotpipe.lake.storage import Storage, join
from iotpipe.lake.tables import RUN_QUARANTINE, RUNS, run_manifest_uri
from iotpipe.run.models import EMR_SERVERLESS, MAX_EXAMPLES, RunPlan, RunReport, StepAssessment, Verification
from iotpipe.run.quality import JUDGED, evaluate, format_breach, status_with_quality


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
    do not reconcile, a file missing, a planted id) is UNRECONCILED, never SUCCEEDED."""
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


# A run that needs no operator: it succeeded, or it handed its data to the run holding the lease.
_NO_ATTENTION = frozenset({"SUCCEEDED", "DEFERRED", "NOTHING_TO_DO"})


def needs_attention(status: str) -> bool:
    """True for every final status but SUCCEEDED, DEFERRED and NOTHING_TO_DO (the RunNotSucceeded metric and its
    alarm), so a status added later alarms until it is listed here on purpose."""
    return status not in _NO_ATTENTION


def spark_batch_seconds(verification: Verification | None) -> float | None:
    """Time the Spark job spent in the run's micro-batches (from each batch's start to its last
    commit), None when the run verified nothing."""
    if verification is None or "batch_ms" not in verification.counts:
        return None
    return round(int(verification.counts["batch_ms"]) / 1000, 3)


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
        "input": verification.counts["input_rows"] if verification else 0,
        "gold": verification.gold.new_rows if verification else 0,
        "quarantined": verification.quarantine.new_rows if verification else 0,
        "duplicates": verification.counts["duplicates"] if verification else 0,
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
    return run_manifest_uri(plan.lake.runs, plan.run_id)


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


def summary_line(report: RunReport, execution_arn: str | None = None) -> str:
    """One line an operator reads first (the SNS message's first line): status, counts, duration
    and, given the execution's ARN, the link to it in the Step Functions console."""
    r = report.records
    line = (
        f"iotpipe run {report.run_id}: {report.status} - input {r['input']:,}, gold {r['gold']:,}, "
        f"quarantined {r['quarantined']:,}, duplicates {r['duplicates']:,}"
    )
    if report.status == "UNRECONCILED":
        line += f" ({reconciliation_problem(report.reconciliation)})"
    if report.ignored_objects.get("count"):
        line += f", ignored objects {report.ignored_objects['count']:,}"
    if report.quality_breaches:
        line += "; quality: " + ", ".join(format_breach(breach) for breach in report.quality_breaches)
    if report.seconds is not None:
        line += f", in {format_duration(report.seconds)}"
    link = console_url(execution_arn) if execution_arn else None
    if link:
        line += f" - {link}"
    return line


def reconciliation_problem(reconciliation: dict) -> str:
    """Why a run does not reconcile, in a few words from its report."""
    parts = []
    if reconciliation.get("difference"):
        parts.append(f"unaccounted {reconciliation['difference']:,}")
    if reconciliation.get("quarantine_input_difference"):
        parts.append(f"tables' inputs differ by {reconciliation['quarantine_input_difference']:,}")
    if reconciliation.get("seen_ids_inconsistent"):
        parts.append(f"seen-id store inconsistent in batches {reconciliation['seen_ids_inconsistent']}")
    if reconciliation.get("foreign_seen_id_commits"):
        parts.append(f"ids added to the seen-id store by commits {reconciliation['foreign_seen_id_commits']}")
    if reconciliation.get("commits_complete") is False:
        parts.append("a batch's commits are missing")
    return "; ".join(parts) or "not reconciled"


def write_run_rows(storage: Storage, runs_uri: str, report: dict) -> list[str]:
    """The run's rows of RUNS and RUN_QUARANTINE, one JSON object per line, one file per run and
    table (`<runs>/tables/<table>/<run_id>.json`): rewritten whole if the run reports again."""
    written = []
    for table in (RUNS, RUN_QUARANTINE):
        rows = tables.run_rows(report)[table.name]
        uri = join(tables.run_rows_uri(runs_uri, table), f"{report['run_id']}.json")
        if rows:
            storage.write_bytes(uri, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())
            written.append(uri)
    return written


def format_duration(seconds: float) -> str:
    """`2h 03m 04s`, `3m 04s` or `4s`: whole seconds, the largest unit first."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


# The console's host per partition; the region is part of the host only in the commercial one.
_CONSOLE_HOSTS = {
    "aws": "https://{region}.console.aws.amazon.com",
    "aws-cn": "https://{region}.console.amazonaws.cn",
    "aws-us-gov": "https://console.amazonaws-us-gov.com",
}


def spark_identifiers(
    plan: RunPlan, execution_arn: str, cluster: dict | None, job_run: dict | None, assessment: StepAssessment | None
) -> dict:
    """Where the run's Spark job ran, for the report: the EMR cluster, or the EMR Serverless
    application and the last job run (from its result, or from the failure the assessment read),
    with a link to it in the console."""
    if plan.runtime != EMR_SERVERLESS:
        return {"runtime": plan.runtime, "cluster_id": (cluster or {}).get("cluster_id")}
    ran = {str(key).lower(): value for key, value in (job_run or {}).items()}
    ran = {str(key).lower(): value for key, value in ran.get("jobrun", {}).items()} if "jobrun" in ran else ran
    failure = assessment.failure if assessment else {}
    application = ran.get("applicationid") or failure.get("application_id")
    job_run_id = ran.get("jobrunid") or failure.get("job_run_id")
    found = {"runtime": plan.runtime, "application_id": application, "job_run_id": job_run_id}
    link = job_run_console_url(execution_arn, application, job_run_id) if application and job_run_id else None
    return found | ({"job_run_link": link} if link else {})


def job_run_console_url(execution_arn: str, application_id: str, job_run_id: str) -> str | None:
    """The EMR console's page of an EMR Serverless job run, in the execution's partition and region."""
    parts = execution_arn.split(":")
    host = _CONSOLE_HOSTS.get(parts[1]) if len(parts) > 3 else None
    if host is None or not parts[3]:
        return None
    region = parts[3]
    return (f"{host.format(region=region)}/emr/home?region={region}"
            f"#/serverless/applications/{application_id}/job-runs/{job_run_id}")  # fmt: skip


def console_url(execution_arn: str) -> str | None:
    """The Step Functions console page of an execution, from its ARN
    (`arn:<partition>:states:<region>:<account>:execution:<machine>:<name>`); None for a
    partition without a known console or for anything that is not an execution ARN."""
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[0] != "arn" or parts[2] != "states" or parts[5] != "execution":
        return None
    partition, region = parts[1], parts[3]
    host = _CONSOLE_HOSTS.get(partition)
    if host is None or not region:
        return None
    return f"{host.format(region=region)}/states/home?region={region}#/v2/executions/details/{execution_arn}"
