"""The checkpoint lease: exclusive, expiring, renewable, and a pending mark that forces a drain.
The same behaviour is required of the DynamoDB store (moto) and the local file store."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from iotpipe.lease import DynamoDBLeaseStore, FileLeaseStore, lease_store_for

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
    assert store.get(KEY) is None


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

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!Sub", lambda loader, node: loader.construct_scalar(node))
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    uri = template["Globals"]["Function"]["Environment"]["Variables"]["LEASE_STORE"]
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
