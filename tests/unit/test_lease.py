"""The checkpoint lease: exclusive, expiring, renewable, and a pending mark that forces a drain.
The same behaviour is required of the DynamoDB store (moto) and the local file store."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from iotpipe.lease import DynamoDBLeaseStore, FileLeaseStore

KEY = "bronze-to-gold"


@pytest.fixture(params=["dynamodb", "file"])
def store(request, tmp_path):
    if request.param == "file":
        yield FileLeaseStore(str(tmp_path / "leases"))
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="leases",
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoDBLeaseStore("leases", client)


def test_only_one_holder_at_a_time(store):
    assert store.acquire(KEY, "run-a", 60, now=1000)
    assert not store.acquire(KEY, "run-b", 60, now=1001)
    assert store.get(KEY).holder == "run-a"


def test_a_dead_holders_lease_is_taken_over_after_expiry(store):
    assert store.acquire(KEY, "dead-run", 60, now=1000)
    assert not store.acquire(KEY, "run-b", 60, now=1059)
    assert store.acquire(KEY, "run-b", 60, now=1061)
    assert not store.renew(KEY, "dead-run", 60, now=1062)


def test_a_heartbeat_keeps_the_lease_alive(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.renew(KEY, "run-a", 60, now=1050)
    assert not store.acquire(KEY, "run-b", 60, now=1100)
    assert store.get(KEY).expires_at == 1110


def test_a_busy_lease_marked_pending_makes_the_holder_drain_before_releasing(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.mark_pending(KEY, now=1010)
    assert store.release(KEY, "run-a") == "pending"
    assert store.get(KEY).holder == "run-a" and not store.get(KEY).pending
    assert store.release(KEY, "run-a") == "released"
    assert store.get(KEY) is None


def test_only_the_holder_can_release(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.release(KEY, "run-b") == "not-held"
    assert store.get(KEY).holder == "run-a"


def test_a_free_or_expired_lease_cannot_be_marked_pending(store):
    assert not store.mark_pending(KEY, now=1000)
    store.acquire(KEY, "run-a", 60, now=1000)
    assert not store.mark_pending(KEY, now=2000)


def test_a_pending_mark_remembers_when_it_was_last_set_after_it_is_cleared(store):
    assert store.acquire(KEY, "run-a", 600, now=1000)
    assert store.mark_pending(KEY, now=1010) and store.mark_pending(KEY, now=1020)
    assert store.get(KEY).marked_at == 1020
    assert store.release(KEY, "run-a") == "pending"
    lease = store.get(KEY)
    assert not lease.pending and lease.marked_at == 1020
