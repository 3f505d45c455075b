"""AcquireLease and ReleaseLease: the run's side of the checkpoint lease, and the drain loop.

Acquire also decides whether the run has anything to do before any cluster exists: a run the
trigger (or a follow-up) started for data the checkpoint already took (a redelivered event, a
mark for data the last run read) ends at once as NOTHING_TO_DO.

Release is where nothing gets left behind: before letting the lease go, the holder looks at
the pending mark that S3 events (through the trigger) and other runs leave when they find the
lease busy, and at when the last attempt started (its run summary); Bronze is never listed.
Unprocessed data sends it round again (a drain round: same execution, same cluster, lease
kept); when the rounds run out, or the run failed or had nothing to do, it gives the lease up
and, if a mark says data is waiting, hands over to a follow-up execution. Any object created
after the last look raises an event that either finds the lease marked (caught here) or free
(and starts a run).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Callable

from iotpipe.lake.storage import Storage, join
from iotpipe.run.assess import attempt_summary_uri
from iotpipe.run.lease_store import Lease, LeaseStore
from iotpipe.run.models import DrainDecision, LeaseDecision, RunPlan
from iotpipe.run.plan import committed_batches, planned_batches, spark_attempt
from iotpipe.run.settings import Settings


def acquire_for_run(
    plan: RunPlan, waits_left: int, leases: LeaseStore, storage: Storage, now: float | None = None
) -> LeaseDecision:
    """Take the lease, or count down a wait, or (no waits left) mark it pending for its holder.

    On success, say whether there is work.
    """
    now = time.time() if now is None else now
    if leases.acquire(plan.lease.key, plan.run_id, plan.lease.initial_seconds, now):
        return _acquired(plan, waits_left, leases, storage)
    if waits_left > 0:
        return LeaseDecision(acquired=False, waits_left=waits_left - 1, deferred=False)
    if leases.mark_pending(plan.lease.key, now):
        return LeaseDecision(acquired=False, waits_left=0, deferred=True)
    # The holder released (or expired) between our two calls: try once more rather than give up.
    if leases.acquire(plan.lease.key, plan.run_id, plan.lease.initial_seconds, now):
        return _acquired(plan, 0, leases, storage)
    return LeaseDecision(acquired=False, waits_left=0, deferred=True)


def _acquired(plan: RunPlan, waits_left: int, leases: LeaseStore, storage: Storage) -> LeaseDecision:
    work, reason = has_work(plan, lambda: leases.get(plan.lease.key), storage)
    return LeaseDecision(
        acquired=True,
        waits_left=waits_left,
        deferred=False,
        work=work,
        work_reason=reason,
    )


def has_work(plan: RunPlan, read_lease: Callable[[], Lease | None], storage: Storage) -> tuple[bool, str]:
    """Whether the Spark step has anything to do, decided from the checkpoint and the lease.

    Only runs started for data (by the trigger, or as a follow-up) can be skipped: a console run
    is a request. The trigger records the newest arrival it has seen; the checkpoint's
    `last_run.json` says when the last complete attempt started, and that attempt took every
    object present at its start. An uncommitted batch is work (its replay) whatever the arrivals.
    """
    if plan.generate:
        return True, "the run generates data"
    if plan.trigger == "console":
        return True, "started from the console"
    if planned_batches(storage, plan.lake.checkpoint) != committed_batches(storage, plan.lake.checkpoint):
        return True, "a batch is planned but not committed"
    started = summary_started_at(storage, join(plan.lake.checkpoint, "last_run.json"))
    if started is None:
        return True, "no complete run yet"
    lease = read_lease()
    arrived = lease.arrived_at if lease else None
    if arrived is None:
        return True, "no arrival recorded"
    if arrived >= started - plan.lease.clock_margin_seconds:
        return True, "data arrived after the last complete run started"
    return False, "every arrival is older than the last complete run, which took it"


def summary_started_at(storage: Storage, uri: str) -> float | None:
    """When the attempt whose run summary is at `uri` started; None if there is none. The job
    writes a summary only after its query finished. Rounded down: errs towards more work."""
    if storage.stat(uri) is None:
        return None
    summary = json.loads(storage.read_bytes(uri))
    finished = datetime.fromisoformat(summary["finished_at"].replace("Z", "+00:00")).timestamp()
    return finished - float(summary.get("seconds") or 0) - 1.0


def attempt_started_at(storage: Storage, checkpoint_uri: str, attempt_run_id: str | None) -> float | None:
    """When the attempt's job started, from its run summary; None if there is no summary."""
    return summary_started_at(storage, attempt_summary_uri(checkpoint_uri, attempt_run_id)) if attempt_run_id else None


def release_for_run(
    plan: RunPlan,
    drain_round: int,
    outcome: str,
    next_attempt_number: int,
    settings: Settings,
    storage: Storage,
    leases: LeaseStore,
    attempt_run_id: str | None = None,
) -> DrainDecision:
    """Drain what is left, or release.

    `outcome` is "succeeded", "failed" or "nothing-to-do". Only a succeeded run drains (a
    failed one would fail again; a run with nothing to do has no cluster): the others give the
    lease up at once and hand over to a follow-up run if a mark says data is waiting.

    What may be left is known without listing Bronze: the last attempt's summary says it took
    everything present when it started, and every object created since raised an S3 event that
    found the lease held and marked it pending. So data waits exactly when the lease is marked
    and the latest mark is not older than the attempt's start (a mark for data the run already
    took, like its own generator's uploads, costs no round), or when the summary is missing.
    """
    if outcome != "succeeded":
        released, marked = leases.give_up(plan.lease.key, plan.run_id)
        if marked:
            why = f"{outcome}: data arrived during the run, a follow-up run takes it"
            return DrainDecision(next="follow_up", released=released, round=drain_round, unprocessed=1, reason=why)
        return DrainDecision(next="finish", released=released, round=drain_round, unprocessed=0, reason=outcome)
    started = attempt_started_at(storage, plan.lake.checkpoint, attempt_run_id)
    reason = "the last attempt wrote no run summary" if started is None else ""
    if started is not None:
        for _ in range(3):
            released = leases.release(plan.lease.key, plan.run_id)
            if released != "pending":
                return DrainDecision(next="finish", released=released, round=drain_round, unprocessed=0)
            lease = leases.get(plan.lease.key)
            marked = lease.marked_at if lease else None
            if marked is None or marked >= started:
                reason = "data arrived after the last attempt started (pending mark)"
                break
        else:
            reason = "data keeps arriving (pending marks)"
    if drain_round >= plan.max_drain_rounds:
        released, _ = leases.give_up(plan.lease.key, plan.run_id)
        return DrainDecision(next="follow_up", released=released, round=drain_round, unprocessed=1, reason=reason)
    if not leases.renew(plan.lease.key, plan.run_id, plan.lease.initial_seconds):
        return DrainDecision(
            next="finish", released="lost", round=drain_round, unprocessed=1,
            reason=f"{reason}; but the lease was lost (expired or taken): the run holding it now takes that data",
        )  # fmt: skip
    attempt = spark_attempt(plan.run_id, next_attempt_number, settings, None,
                            planned_batches(storage, plan.lake.checkpoint),
                            committed_batches(storage, plan.lake.checkpoint), plan.execution_id)  # fmt: skip
    return DrainDecision(
        next="drain", released="held", round=drain_round + 1, unprocessed=1, reason=reason, next_attempt=attempt
    )


def release_once(
    plan: RunPlan, drain_round: int, storage: Storage, decide: Callable[[], DrainDecision]
) -> DrainDecision:
    """`decide` (ReleaseLease's `release_for_run`), once per run and round: the decision changes
    the lease (clears the mark, gives the lease up), so a retried call (the first one's answer was
    lost) would decide again from the changed lease and forget a drain or a hand-over. The
    decision is recorded (`<runs>/<run_id>/release-<round>.json`) and a retry returns it."""
    record = join(plan.lake.runs, plan.run_id, f"release-{drain_round}.json")
    if storage.stat(record) is not None:
        return DrainDecision.model_validate_json(storage.read_bytes(record))
    decision = decide()
    storage.write_bytes(record, decision.model_dump_json().encode())
    return decision
