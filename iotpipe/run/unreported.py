"""Reports for runs that ended before they reported, so that every committed batch is in one report.

Each batch belongs to the run whose attempt made its last commit (the seen-id store's, tagged with
the run and its execution: spark/job.py). A run reports its own batches (iotpipe.run.verify). A
run whose execution ended without a report (stopped, timed out, its ReportStatus failed, the
machine running it locally was interrupted) is reported by the next run that reports: ReportStatus
looks at the seen-id store's commits since the last point at which every run had reported, asks
Step Functions whether each run without a manifest has ended, and writes the report of each one
that has, with status INTERRUPTED and the counts of its batches, verified as any run's are. A run
still running will write its own. Each run's report is one manifest and one row per table, keyed
by the run, so a report written twice is the same report.
"""

from __future__ import annotations

import json
from datetime import datetime

from iotpipe.lake.iceberg import EXECUTION, RUN_ID, Snapshot, TableNotFound, read_metadata
from iotpipe.lake.storage import Storage, join
from iotpipe.lake.tables import SEEN_IDS, run_manifest_uri
from iotpipe.run.history import record_run
from iotpipe.run.models import RunPlan, RunReport
from iotpipe.run.report import build_report, write_manifest, write_run_rows
from iotpipe.run.verify import verify_run

ALL_REPORTED = "all-reported-through.json"  # {"timestamp_ms": T}: every run with a commit up to T has a report
ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def _all_reported_through(storage: Storage, runs_uri: str) -> int:
    uri = join(runs_uri, ALL_REPORTED)
    return int(json.loads(storage.read_bytes(uri))["timestamp_ms"]) if storage.stat(uri) is not None else -1


def runs_since(seen_main_line: list[Snapshot], after_ms: int) -> list[tuple[str, str, int]]:
    """(run, execution, first commit time) of each run with a batch committed after `after_ms`, oldest first."""
    runs: dict[str, tuple[str, str, int]] = {}
    for snapshot in sorted(seen_main_line, key=lambda s: s.timestamp_ms):
        run = snapshot.summary.get(RUN_ID)
        if run and snapshot.timestamp_ms > after_ms and run not in runs:
            runs[run] = (run, snapshot.summary.get(EXECUTION, ""), snapshot.timestamp_ms)
    return list(runs.values())


def execution_ended(stepfunctions, execution_arn: str) -> bool:
    """Whether the run's execution can no longer report: it ended, or Step Functions no longer
    knows it (an execution of a local engine that has gone, or past the retention of 90 days)."""
    if not execution_arn:
        return True
    try:
        status = stepfunctions.describe_execution(executionArn=execution_arn)["status"]
    except stepfunctions.exceptions.ExecutionDoesNotExist:
        return True
    return status in ENDED


def report_for_dead_run(plan: RunPlan, run_id: str, execution: str, storage: Storage, glue, database: str,
                        now: datetime) -> RunReport:  # fmt: skip
    dead = plan.model_copy(update={"run_id": run_id, "execution_id": execution, "trigger": "console"})
    verification, document = verify_run(dead, run_id, storage, glue, database)
    storage.write_bytes(verification.document, json.dumps(document, indent=1, sort_keys=True, default=str).encode())
    report = build_report(dead, verification, None, None, 0, None, now)
    report.status = "INTERRUPTED"
    report.trigger = "unknown"
    report.quality_breaches = []
    report.reported_by = plan.run_id
    report.error = {"Error": "RunInterrupted", "Cause": f"the run's execution ended before its report; {plan.run_id} "
                    "reported the batches it committed"}  # fmt: skip
    write_manifest(report, verification, storage)
    write_run_rows(storage, plan.lake.runs, report.model_dump())
    record_run(storage, plan.lake.runs, report)
    return report


def report_dead_runs(plan: RunPlan, storage: Storage, glue, database: str, stepfunctions, now: datetime) -> list[str]:
    """Write the report of every run that ended without one; return their run ids. Called after
    the current run's own manifest is written."""
    try:
        seen = read_metadata(storage, glue, database, SEEN_IDS.name)
    except TableNotFound:
        return []
    through = _all_reported_through(storage, plan.lake.runs)
    reported, still_open = [], []
    candidates = runs_since(seen.main_line(), through)
    for run_id, execution, first_ms in candidates:
        if storage.stat(run_manifest_uri(plan.lake.runs, run_id)) is not None:
            continue
        if run_id == plan.run_id or not execution_ended(stepfunctions, execution):
            still_open.append(first_ms)
            continue
        report_for_dead_run(plan, run_id, execution, storage, glue, database, now)
        reported.append(run_id)
    newest = max((ms for _, _, ms in candidates), default=through)
    settled = min(still_open) - 1 if still_open else newest
    if settled > through:
        storage.write_bytes(join(plan.lake.runs, ALL_REPORTED), json.dumps({"timestamp_ms": settled}).encode())
    return reported
