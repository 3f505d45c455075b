"""AcquireLease and ReleaseLease: the run's side of the checkpoint lease, and the drain loop.

Release is where nothing gets left behind: before letting the lease go, the holder looks at
the pending mark that S3 events (through the trigger) and other runs leave when they find the
lease busy, and at when the last attempt started (its run summary); Bronze is never listed.
Unprocessed data sends it round again (a drain round: same execution, same cluster, lease
kept); when the rounds run out it releases the lease and starts a follow-up execution. Any
object created after the last look raises an event that either finds the lease marked (caught
here) or free (and starts a run).
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from iotpipe.assessment import attempt_summary_uri
from iotpipe.lease import LeaseStore
from iotpipe.models import DrainDecision, LeaseDecision, RunPlan
from iotpipe.planning import committed_batches, planned_batches, spark_attempt
from iotpipe.settings import Settings
from iotpipe.storage import Storage


def acquire_for_run(
    plan: RunPlan, waits_left: int, leases: LeaseStore, storage: Storage, now: float | None = None
) -> LeaseDecision:
    """Take the lease, or count down a wait, or (no waits left) mark it pending for its holder.

    On success, record where the checkpoint stands: what this run reports is what it commits
    from here on, whatever other runs committed while it waited.
    """
    now = time.time() if now is None else now
    if leases.acquire(plan.lease.key, plan.run_id, plan.lease.initial_seconds, now):
        return LeaseDecision(
            acquired=True,
            waits_left=waits_left,
            deferred=False,
            committed_before=committed_batches(storage, plan.lake.checkpoint),
        )
    if waits_left > 0:
        return LeaseDecision(acquired=False, waits_left=waits_left - 1, deferred=False)
    if leases.mark_pending(plan.lease.key, now):
        return LeaseDecision(acquired=False, waits_left=0, deferred=True)
    # The holder released (or expired) between our two calls: try once more rather than give up.
    if leases.acquire(plan.lease.key, plan.run_id, plan.lease.initial_seconds, now):
        return LeaseDecision(
            acquired=True,
            waits_left=0,
            deferred=False,
            committed_before=committed_batches(storage, plan.lake.checkpoint),
        )
    return LeaseDecision(acquired=False, waits_left=0, deferred=True)


def attempt_started_at(storage: Storage, checkpoint_uri: str, attempt_run_id: str | None) -> float | None:
    """When the attempt's job started, from its run summary (written only after both queries
    finished); None if there is no summary. Rounded down: errs towards one more drain round."""
    if not attempt_run_id:
        return None
    uri = attempt_summary_uri(checkpoint_uri, attempt_run_id)
    if storage.stat(uri) is None:
        return None
    summary = json.loads(storage.read_bytes(uri))
    finished = datetime.fromisoformat(summary["finished_at"].replace("Z", "+00:00")).timestamp()
    return finished - float(summary.get("seconds") or 0) - 1.0


def release_for_run(
    plan: RunPlan,
    drain_round: int,
    succeeded: bool,
    next_attempt_number: int,
    settings: Settings,
    storage: Storage,
    leases: LeaseStore,
    attempt_run_id: str | None = None,
) -> DrainDecision:
    """Drain what is left, or release.

    What may be left is known without listing Bronze: the last attempt's summary says it took
    everything present when it started, and every object created since raised an S3 event that
    found the lease held and marked it pending. So data waits exactly when the lease is marked
    and the latest mark is not older than the attempt's start (a mark for data the run already
    took, like its own generator's uploads, costs no round), or when the summary is missing.
    """
    if not succeeded:
        released = leases.release(plan.lease.key, plan.run_id)
        return DrainDecision(next="finish", released=released, round=drain_round, unprocessed=0, reason="run failed")
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
    if drain_round < plan.max_drain_rounds:
        return _drain(plan, drain_round, reason, next_attempt_number, settings, storage, leases)
    released = leases.release(plan.lease.key, plan.run_id)
    return DrainDecision(next="follow_up", released=released, round=drain_round, unprocessed=1, reason=reason)


def _drain(plan, drain_round, reason, number, settings, storage, leases) -> DrainDecision:
    leases.renew(plan.lease.key, plan.run_id, plan.lease.initial_seconds)
    attempt = spark_attempt(plan.run_id, number, settings, None, planned_batches(storage, plan.lake.checkpoint))
    return DrainDecision(
        next="drain", released="held", round=drain_round + 1, unprocessed=1, reason=reason, next_attempt=attempt
    )
