"""The job's lease heartbeat: transient renewal errors are retried within the lease's margin;
when the lease can no longer be proven held, the queries are stopped before it expires."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from iotpipe.run.lease_store import FileLeaseStore
from spark.heartbeat import LeaseHeartbeat, LeaseLost

KEY, HOLDER = "bronze-to-gold", "run-a"
SECONDS = 0.6  # renew every 0.2 s, margin 0.1 s


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")


class FlakyStore:
    """A lease store whose renewals follow a script: True, False, or an exception to raise."""

    def __init__(self, script):
        self.script, self.calls = list(script), 0

    def claim_driver(self, key, holder, driver, seconds, now=None):
        return 0.0

    def renew_driver(self, key, holder, driver, seconds, now=None):
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


def test_a_second_driver_of_the_same_run_waits_until_the_first_has_stopped_writing(tmp_path):
    """The step of attempt 1 ended FAILED while its driver still runs; attempt 2 starts under the
    same run. Its claim fences attempt 1 (whose next renewal fails, so it stops its queries), and
    it writes nothing before attempt 1's last proven expiry."""
    store = FileLeaseStore(str(tmp_path))
    assert store.acquire(KEY, HOLDER, 60)
    stopped: list = []
    first = LeaseHeartbeat(store, KEY, HOLDER, SECONDS, on_lost=lambda reason: stopped.append((time.time(), reason)),
                           driver="attempt-1", retry_seconds=0.02)  # fmt: skip
    first.prove_held()
    first.start()
    time.sleep(SECONDS / 2)
    first_held_until = store.get(KEY).driver_until
    second, _ = heartbeat(store)
    second.driver = "attempt-2"
    second.prove_held()
    proven_at = time.time()
    first.stop()
    assert stopped and "held by another run" in stopped[0][1], "attempt 1 was fenced"
    assert stopped[0][0] < proven_at and proven_at >= first_held_until, "attempt 2 waited out attempt 1's claim"
    assert second.waited_for_previous > 0 and store.get(KEY).driver == "attempt-2"
    second.end_claim()
    assert store.get(KEY).driver is None


def test_a_driver_that_ended_its_claim_lets_the_next_start_at_once(tmp_path):
    store = FileLeaseStore(str(tmp_path))
    assert store.acquire(KEY, HOLDER, 60)
    first, _ = heartbeat(store)
    first.driver = "attempt-1"
    first.prove_held()
    first.end_claim()
    second, _ = heartbeat(store)
    second.driver = "attempt-2"
    began = time.time()
    second.prove_held()
    assert second.waited_for_previous == 0 and time.time() - began < SECONDS / 3


class HangingStore(FlakyStore):
    """The second renewal call never answers in time, as over a network that drops packets."""

    def renew_driver(self, key, holder, driver, seconds, now=None):
        self.calls += 1
        if self.calls >= 2:
            time.sleep(30)
        return True


def test_a_renewal_that_hangs_still_stops_the_queries_before_the_lease_expires():
    beat, stopped = heartbeat(HangingStore([]))
    beat.prove_held()
    held_until = beat.held_until
    beat.start()
    time.sleep(SECONDS * 2)
    assert len(stopped) == 1, "stopped once, while the renewal call still hangs"
    stopped_at, reason = stopped[0]
    assert stopped_at < held_until and "not renewed in time" in reason


def test_the_lease_stores_dynamodb_client_fails_fast(monkeypatch):
    from iotpipe.run.lease_store import DynamoDBLeaseStore

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = DynamoDBLeaseStore("leases").client.meta.config
    assert config.connect_timeout <= 5 and config.read_timeout <= 5 and config.retries["total_max_attempts"] <= 3
