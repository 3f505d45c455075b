"""The checkpoint lease: exclusive, expiring, renewable, and a pending mark that forces a drain.
The same behaviour is required of the DynamoDB store (moto) and the local file store."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from iotpipe.local.iam.stack import parse_template
from iotpipe.run.lease_store import DynamoDBLeaseStore, FileLeaseStore, lease_store_for

KEY = "bronze-to-gold"
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(params=["dynamodb", "file"])
def store(request, tmp_path):
    if request.param == "file":
        yield FileLeaseStore(str(tmp_path / "leases"))
        return
    with mock_aws():
        yield DynamoDBLeaseStore("leases", create_table("leases", "us-east-1"))


def create_table(name: str, region: str):
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.fixture
def node_without_region(monkeypatch, tmp_path):
    """Like an EMR node running the job: no region in the environment or in an AWS config file."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


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
    assert store.get(KEY).holder is None and store.acquire(KEY, "run-b", 60, now=1011)


def test_only_the_holder_can_release(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.release(KEY, "run-b") == "not-held"
    assert store.get(KEY).holder == "run-a"


def test_a_free_or_expired_lease_cannot_be_marked_pending(store):
    assert not store.mark_pending(KEY, now=1000)
    store.acquire(KEY, "run-a", 60, now=1000)
    assert not store.mark_pending(KEY, now=2000)


def test_a_dynamodb_store_takes_its_region_from_the_uri(node_without_region):
    with mock_aws():
        create_table("leases", "eu-west-1")
        store = lease_store_for("dynamodb://leases?region=eu-west-1")
        assert store.acquire(KEY, "run-a", 60)
    assert (store.table, store.client.meta.region_name) == ("leases", "eu-west-1")


def test_a_dynamodb_uri_without_region_uses_the_default_region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        create_table("leases", "us-east-1")
        store = lease_store_for("dynamodb://leases")
        assert store.acquire(KEY, "run-a", 60)
    assert store.table == "leases"


def test_the_lease_store_the_template_configures_works_on_a_node_without_region(node_without_region):
    """The template's LEASE_STORE reaches every Lambda and, as --lease, the Spark job on EMR."""
    template = parse_template((ROOT / "template.yaml").read_text())
    uri = template["Globals"]["Function"]["Environment"]["Variables"]["LEASE_STORE"]["Fn::Sub"]
    uri = uri.replace("${LeaseTable}", "iotpipe-LeaseTable-X1").replace("${AWS::Region}", "eu-west-1")
    with mock_aws():
        create_table("iotpipe-LeaseTable-X1", "eu-west-1")
        assert lease_store_for(uri).acquire(KEY, "run-a", 60)


def test_a_pending_mark_remembers_when_it_was_last_set_after_it_is_cleared(store):
    assert store.acquire(KEY, "run-a", 600, now=1000)
    assert store.mark_pending(KEY, now=1010) and store.mark_pending(KEY, now=1020)
    assert store.get(KEY).marked_at == 1020
    assert store.release(KEY, "run-a") == "pending"
    lease = store.get(KEY)
    assert not lease.pending and lease.marked_at == 1020


# The lease belongs to the attempt that writes (the driver), not only to the run.
def test_a_new_drivers_claim_fences_the_previous_driver(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.claim_driver(KEY, "run-a", "attempt-1", 60, now=1001) == 0
    assert store.renew_driver(KEY, "run-a", "attempt-1", 60, now=1010)
    assert store.claim_driver(KEY, "run-a", "attempt-2", 60, now=1020) == 1070  # attempt-1 proved up to 1070
    assert not store.renew_driver(KEY, "run-a", "attempt-1", 60, now=1021)  # fenced: it must stop writing
    assert store.renew_driver(KEY, "run-a", "attempt-2", 60, now=1022)


def test_a_driver_that_ended_its_claim_costs_its_successor_no_wait(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    store.claim_driver(KEY, "run-a", "attempt-1", 60, now=1001)
    assert store.end_driver(KEY, "run-a", "attempt-1", 60, now=1001.5)
    assert store.get(KEY).expires_at == 1061.5  # the run keeps the lease for what follows the step
    assert store.claim_driver(KEY, "run-a", "attempt-2", 60, now=1002) == 0
    assert not store.end_driver(KEY, "run-a", "attempt-1", 60)  # ending a claim it lost changes nothing
    assert store.get(KEY).driver == "attempt-2"


def test_a_driver_left_by_a_dead_run_is_waited_out_by_the_next_runs_driver(store):
    store.acquire(KEY, "dead-run", 60, now=1000)
    store.claim_driver(KEY, "dead-run", "dead-run-attempt-1", 60, now=1001)
    assert store.acquire(KEY, "run-b", 60, now=1062)  # the run's lease expired at 1061
    assert store.claim_driver(KEY, "run-b", "run-b-attempt-1", 60, now=1063) == 0  # its driver's too
    # run-b's step ended FAILED and it gave the lease up, but its driver is still alive until 1123
    assert store.give_up(KEY, "run-b") == ("released", False)
    assert store.acquire(KEY, "run-c", 60, now=1071)
    assert store.claim_driver(KEY, "run-c", "run-c-attempt-1", 60, now=1072) == 1123


def test_a_driver_cannot_claim_or_renew_a_lease_its_run_does_not_hold(store):
    assert store.claim_driver(KEY, "run-a", "attempt-1", 60, now=1000) is None
    store.acquire(KEY, "run-b", 60, now=1000)
    assert store.claim_driver(KEY, "run-a", "attempt-1", 60, now=1001) is None
    assert not store.renew_driver(KEY, "run-a", "attempt-1", 60, now=1002)
    assert not store.end_driver(KEY, "run-a", "attempt-1", 60, now=1002)
    assert store.get(KEY).expires_at == 1060, "a driver of another run cannot extend run-b's lease"


def test_a_driver_that_outlived_its_lease_stops_but_its_run_may_carry_on_if_nobody_took_it(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    store.claim_driver(KEY, "run-a", "attempt-1", 60, now=1001)
    assert not store.renew_driver(KEY, "run-a", "attempt-1", 60, now=1062)  # too late: it has stopped
    assert store.renew(KEY, "run-a", 60, now=1063)  # the run (its Lambdas) is still the holder
    assert store.claim_driver(KEY, "run-a", "attempt-2", 60, now=1064) == 0  # attempt-1's claim ran out


def test_holding_quiet_needs_the_lease_and_no_live_driver(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.hold_quiet(KEY, "run-a", 60, now=1001)
    store.claim_driver(KEY, "run-a", "attempt-1", 30, now=1002)
    assert not store.hold_quiet(KEY, "run-a", 60, now=1003)  # attempt-1 may still write until 1032
    assert store.hold_quiet(KEY, "run-a", 60, now=1031) is False
    store.renew(KEY, "run-a", 600, now=1031)
    assert store.hold_quiet(KEY, "run-a", 60, now=1033)  # outlived its claim: it stopped writing
    store.claim_driver(KEY, "run-a", "attempt-2", 30, now=1040)
    store.end_driver(KEY, "run-a", "attempt-2", 30, now=1040)
    assert store.hold_quiet(KEY, "run-a", 60, now=1041)
    assert not store.hold_quiet(KEY, "run-b", 60, now=1042)


def test_giving_up_releases_whatever_the_mark_and_says_whether_one_was_set(store):
    store.acquire(KEY, "run-a", 60, now=1000)
    assert store.give_up(KEY, "run-b") == ("not-held", False)
    store.mark_pending(KEY, now=1001)
    assert store.give_up(KEY, "run-a") == ("released", True)
    lease = store.get(KEY)
    assert lease.holder is None and not lease.pending
    assert store.acquire(KEY, "run-b", 60, now=1002)
    assert store.give_up(KEY, "run-b") == ("released", False)


def test_arrivals_keep_the_newest_whatever_the_order(store):
    store.note_arrival(KEY, 1000)
    store.note_arrival(KEY, 900)
    assert store.get(KEY).arrived_at == 1000 and store.get(KEY).holder is None
    assert store.acquire(KEY, "run-a", 60, now=1001)
    store.note_arrival(KEY, 1005)
    lease = store.get(KEY)
    assert lease.arrived_at == 1005 and lease.holder == "run-a"
