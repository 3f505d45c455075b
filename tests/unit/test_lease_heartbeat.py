"""The job's lease heartbeat: transient renewal errors are retried within the lease's margin;
when the lease can no longer be proven held, the queries are stopped before it expires."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from iotpipe.lease import FileLeaseStore
from spark.heartbeat import LeaseHeartbeat, LeaseLost

KEY, HOLDER = "bronze-to-gold", "run-a"
SECONDS = 0.6  # renew every 0.2 s, margin 0.1 s


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")


class FlakyStore:
    """A lease store whose renewals follow a script: True, False, or an exception to raise."""

    def __init__(self, script):
        self.script, self.calls = list(script), 0

    def renew(self, key, holder, seconds, now=None):
        self.calls += 1
        step = self.script.pop(0) if self.script else True
        if isinstance(step, Exception):
            raise step
        return step


def heartbeat(store) -> tuple[LeaseHeartbeat, list]:
    stopped: list = []
    beat = LeaseHeartbeat(store, KEY, HOLDER, SECONDS, on_lost=lambda reason: stopped.append((time.time(), reason)),
                          retry_seconds=0.02)  # fmt: skip
    return beat, stopped


def test_transient_renewal_errors_are_retried_and_the_lease_is_kept():
    store = FlakyStore([True, throttled(), throttled(), True])
    beat, stopped = heartbeat(store)
    beat.prove_held()
    beat.start()
    time.sleep(SECONDS * 2)
    beat.stop()
    assert not stopped and not beat.lost.is_set()
    assert beat.transient_errors == 2 and store.calls >= 5


def test_the_queries_stop_before_the_lease_expires_when_renewals_keep_failing():
    store = FlakyStore([True] + [throttled()] * 10_000)
    beat, stopped = heartbeat(store)
    beat.prove_held()
    held_until = beat.held_until
    beat.start()
    time.sleep(SECONDS * 2)
    beat.stop()
    assert len(stopped) == 1, "the queries must be stopped exactly once"
    stopped_at, reason = stopped[0]
    assert held_until - beat.margin - 0.05 <= stopped_at < held_until, "stop within the margin, before expiry"
    assert "could not be renewed" in reason and "ThrottlingException" in reason
    assert beat.lost.is_set()


def test_a_lease_taken_by_another_run_stops_the_queries_at_once():
    store = FlakyStore([True, False])
    beat, stopped = heartbeat(store)
    beat.prove_held()
    beat.start()
    time.sleep(SECONDS)
    beat.stop()
    assert len(stopped) == 1 and "held by another run" in stopped[0][1]
    assert store.calls == 2, "no renewal after the lease was found taken"


def test_no_query_starts_without_proof_that_the_lease_is_held(tmp_path):
    store = FileLeaseStore(str(tmp_path))
    store.acquire(KEY, "another-run", 60)
    beat, stopped = heartbeat(store)
    with pytest.raises(LeaseLost, match="held by another run"):
        beat.prove_held()
    assert stopped and beat.lost.is_set()


def test_a_real_store_keeps_the_lease_alive_while_the_heartbeat_runs(tmp_path):
    store = FileLeaseStore(str(tmp_path))
    assert store.acquire(KEY, HOLDER, SECONDS)
    beat, stopped = heartbeat(store)
    beat.prove_held()
    beat.start()
    time.sleep(SECONDS * 2.5)
    assert not store.acquire(KEY, "another-run", 60), "renewed past its first expiry"
    beat.stop()
    assert not stopped and store.get(KEY).holder == HOLDER
