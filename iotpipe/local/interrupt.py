"""Ending a local run on Ctrl-C or SIGTERM, as cleanly as a stopped execution ends on AWS, and
better: nothing is left for the next run to wait out.

In order: the execution is stopped (moto's engine runs no further state), the processes the run
started (generator shards, the Spark job, each in a process group of its own) are stopped and
waited for, the checkpoint lease is given up (with the Spark driver's claim ended first: its
process is gone, so the next run's driver has nothing to wait for), and the run is reported as
`INTERRUPTED` with the batches it committed, verified as every run's are (iotpipe.run.verify),
and filed in the run history like any report. On AWS the next run that reports writes that
report instead (iotpipe.run.unreported), and the lease expires.
"""

from __future__ import annotations

import contextlib
import json
import signal
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Optional

from iotpipe.lake.storage import LocalStorage, Storage
from iotpipe.lake.tables import run_manifest_uri, sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.history import record_run
from iotpipe.run.lease_store import LeaseStore, lease_store_for
from iotpipe.run.models import RunPlan, RunReport
from iotpipe.run.report import build_report, write_manifest, write_run_rows
from iotpipe.run.report_page import write_history_page, write_run_page
from iotpipe.run.verify import verify_run

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt is,
    so that no `except Exception` on the way swallows it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM raise `Interrupted` in the main thread."""

    def handler(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While inside (the clean-up), a second Ctrl-C does not cut the clean-up short."""
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


@dataclass
class InterruptedRun:
    signal_name: str
    state: Optional[str]  # the state the execution was in
    run_id: Optional[str]
    lease: str  # what became of the lease
    report: Optional[RunReport]
    batches: int = 0  # the batches the run committed

    @property
    def exit_status(self) -> int:
        return SIGNAL_EXIT.get(self.signal_name, 1)

    def line(self) -> str:
        """The one line a user reads."""
        where = f" during {self.state}" if self.state else ""
        text = f"interrupted ({self.signal_name}){where}: processes stopped, {self.lease}"
        if self.report is not None:
            r = self.report.records
            text += (
                f"; run {self.report.run_id} recorded as {self.report.status} with {self.batches} committed "
                f"batch{'es' if self.batches != 1 else ''} (input {r['input']:,}, gold {r['gold']:,}, "
                f"quarantined {r['quarantined']:,}, duplicates {r['duplicates']:,})"
            )
        elif self.run_id:
            text += f"; run {self.run_id} had already reported"
        return text


def open_states(history: list[dict]) -> list[str]:
    """The states entered and not exited, outermost first, from an execution's history."""
    running: list[str] = []
    for event in history:
        if "stateEnteredEventDetails" in event:
            running.append(event["stateEnteredEventDetails"]["name"])
        elif "stateExitedEventDetails" in event:
            name = event["stateExitedEventDetails"]["name"]
            if name in running:
                del running[len(running) - 1 - running[::-1].index(name)]
    return running


def planned_run(history: list[dict]) -> Optional[RunPlan]:
    """The run's plan, from PlanRun's output, once PlanRun has run."""
    for event in history:
        details = event.get("stateExitedEventDetails")
        if details and details["name"] == "PlanRun":
            return RunPlan.model_validate(json.loads(details["output"])["plan"])
    return None


def give_up_lease(leases: LeaseStore, plan: RunPlan) -> str:
    """Give the lease up if the run holds it, ending its Spark driver's claim first (the driver's
    process has been stopped and waited for, so no one writes under that claim any more)."""
    lease = leases.get(plan.lease.key)
    if lease is None or lease.holder != plan.run_id:
        return "no lease held"
    if lease.driver:
        leases.end_driver(plan.lease.key, plan.run_id, lease.driver, 0)
    released, pending = leases.give_up(plan.lease.key, plan.run_id)
    if released != "released":
        return f"lease not given up ({released})"
    return "lease released" + (" (data arrived meanwhile: the next run takes it)" if pending else "")


def report_interrupted(
    plan: RunPlan,
    execution: str,
    started_at: Optional[str],
    cause: str,
    storage: Storage,
    glue,
    database: str,
    now: datetime,
) -> tuple[RunReport, int]:
    """The run's report as INTERRUPTED, with the batches it committed, verified and filed as any
    run's report is (the manifest, the run tables' rows, the history index, the pages)."""
    verification, document = verify_run(plan, plan.run_id, storage, glue, database)
    storage.write_bytes(verification.document, json.dumps(document, indent=1, sort_keys=True, default=str).encode())
    report = build_report(plan, verification, None, None, plan.attempt.number, started_at, now)
    report.status = "INTERRUPTED"
    report.quality_breaches = []
    report.error = {"Error": "RunInterrupted", "Cause": cause}
    write_manifest(report, verification, storage)
    write_run_rows(storage, plan.lake.runs, report.model_dump())
    record_run(storage, plan.lake.runs, report)
    write_run_page(storage, plan.lake.runs, report, execution, verification.model_dump(mode="json"))
    write_history_page(storage, plan.lake.runs)
    return report, verification.gold.batches


def end_interrupted_run(engine, signal_name: str, now: Optional[datetime] = None) -> InterruptedRun:
    """Stop the engine's running execution and everything it started; give up its lease; report it."""
    engine.stopping.set()
    arn = engine.current
    if arn is None:
        engine.stop_children()
        return InterruptedRun(signal_name, None, None, "no run had started", None)
    with contextlib.suppress(Exception):  # an execution that has just ended cannot be stopped
        engine.client.stop_execution(executionArn=arn, error="RunInterrupted", cause=signal_name)
    engine.stop_children()
    description = engine.client.describe_execution(executionArn=arn)
    history = engine.client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    states = open_states(history)
    state = states[-1] if states else None
    plan = planned_run(history)
    if plan is None:
        return InterruptedRun(signal_name, state, None, "no lease held", None)
    lease = give_up_lease(lease_store_for(plan.lease.store), plan)
    storage = LocalStorage()
    if storage.stat(run_manifest_uri(plan.lake.runs, plan.run_id)) is not None:  # ReportStatus got there first
        return InterruptedRun(signal_name, state, plan.run_id, lease, None)
    settings = engine.settings
    started = description.get("startDate")
    started_at = started.astimezone(timezone.utc).isoformat() if isinstance(started, datetime) else None
    cause = (
        f"stopped by {signal_name}{f' during {state}' if state else ''}; the report has the batches the run "
        "committed before it stopped"
    )
    report, batches = report_interrupted(
        plan,
        arn,
        started_at,
        cause,
        storage,
        LocalGlue(sqlite_path(settings.catalog_uri)),
        settings.catalog_database,
        now or datetime.now(timezone.utc),
    )
    return InterruptedRun(signal_name, state, plan.run_id, lease, report, batches)
