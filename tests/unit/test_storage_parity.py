"""The local lake must answer like S3: the same objects, listed by the same prefixes, give the same
keys. A local run that is more forgiving than S3 (a prefix read as a folder) would hide bugs that
only show on AWS (`runs/ignored` also lists `runs/ignored-reported/...` there)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from iotpipe.lake.storage import LocalStorage, S3Storage

KEYS = [
    "runs/ignored/a.json",
    "runs/ignored-reported/r1/a.json",
    "runs/run-1.json",
    "runs/run-10.json",
    "checkpoints/gold/offsets/9",
    "checkpoints/gold/offsets/10",
    "raw/with space/x.jsonl",
    "raw/x.jsonl",
    "raw-old/y.jsonl",
]
PREFIXES = ["runs/ignored", "runs/ignored/", "runs/run-1", "runs/", "checkpoints/gold/offsets/1", "raw", "raw/",
            "raw/x.jsonl", "nothing", ""]  # fmt: skip


@pytest.fixture
def lakes(tmp_path):
    """The same KEYS in a local folder and in a (moto) S3 bucket: ((storage, root), (storage, root))."""
    local = LocalStorage()
    for key in KEYS:
        local.write_bytes(str(tmp_path / key), b"x")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lake")
        s3 = S3Storage(client)
        for key in KEYS:
            s3.write_bytes(f"s3://lake/{key}", b"x")
        yield (local, str(tmp_path) + "/"), (s3, "s3://lake/")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_local_listing_by_prefix_equals_s3s(lakes, prefix):
    (local, root), (s3, bucket) = lakes
    from_s3 = sorted(info.uri[len(bucket) :] for info in s3.list(bucket + prefix))
    from_local = sorted(info.uri[len(root) :] for info in local.list(root + prefix))
    assert from_local == from_s3


@pytest.mark.parametrize("prefix", ["", "raw", "runs/", "checkpoints/gold/offsets/"])
@pytest.mark.parametrize("limit", [1, 2, 100])
def test_a_bounded_local_listing_returns_the_same_first_keys_in_the_same_order_as_s3(lakes, prefix, limit):
    (local, root), (s3, bucket) = lakes
    from_s3 = [info.uri[len(bucket) :] for info in s3.list_first(bucket + prefix, limit)]
    from_local = [info.uri[len(root) :] for info in local.list_first(root + prefix, limit)]
    assert from_local == from_s3 and len(from_s3) == min(limit, sum(k.startswith(prefix) for k in KEYS))
