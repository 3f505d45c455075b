"""AcquireLease and ReleaseLease: the run's side of the checkpoint lease, and the drain loop.

Release is where nothing gets left behind: before letting the lease go, the holder looks at
the evidence (Bronze objects that either query has not taken into a batch yet) and at the
pending mark other runs leave when they find the lease busy. Unprocessed data sends it round
again (a drain round: same execution, same cluster, lease kept); when the rounds run out it
releases the lease and starts a follow-up execution. Any object created after the last look
raises an event that either finds the lease marked (caught here) or free (and starts a run).
"""

from __future__ import annotations

import time

from iotpipe.assessment import gather_evidence
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


def release_for_run(
    plan: RunPlan,
    drain_round: int,
    succeeded: bool,
    next_attempt_number: int,
    settings: Settings,
    storage: Storage,
    leases: LeaseStore,
) -> DrainDecision:
    """Drain what is left, or release. The evidence is read again after a pending mark is seen,
    because the object behind the mark exists by then: a mark for data this run already took
    (its own generator's uploads, say) does not cost another round."""
    if not succeeded:
        released = leases.release(plan.lease.key, plan.run_id)
        return DrainDecision(next="finish", released=released, round=drain_round, unprocessed=0)
    unprocessed = _unprocessed(storage, plan)
    if not unprocessed:
        released = leases.release(plan.lease.key, plan.run_id)
        if released != "pending":
            return DrainDecision(next="finish", released=released, round=drain_round, unprocessed=0)
        unprocessed = _unprocessed(storage, plan)
        if not unprocessed:
            released = leases.release(plan.lease.key, plan.run_id)
            return DrainDecision(next="finish", released=released, round=drain_round, unprocessed=0)
    if drain_round < plan.max_drain_rounds:
        return _drain(plan, drain_round, unprocessed, next_attempt_number, settings, storage, leases)
    released = leases.release(plan.lease.key, plan.run_id)
    return DrainDecision(next="follow_up", released=released, round=drain_round, unprocessed=unprocessed)


def _unprocessed(storage: Storage, plan: RunPlan) -> int:
    """Bronze objects that either query has not taken into a batch yet."""
    return max(q["unprocessed_bronze_files"] for q in gather_evidence(storage, plan)["queries"].values())


def _drain(plan, drain_round, unprocessed, number, settings, storage, leases) -> DrainDecision:
    leases.renew(plan.lease.key, plan.run_id, plan.lease.initial_seconds)
    attempt = spark_attempt(plan.run_id, number, settings, None, planned_batches(storage, plan.lake.checkpoint))
    return DrainDecision(
        next="drain", released="held", round=drain_round + 1, unprocessed=unprocessed, next_attempt=attempt
    )
