"""The generator: determinism, sizing, and ground truth checked against the bytes it wrote."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from generator.cities import CITIES
from generator.events import DEFAULT_DEFECT_RATES, QUARANTINE_KINDS, EventSpec
from generator.shards import DatasetPlan, read_manifests, summarise, write_dataset, write_shard
from iotpipe.run.sizes import parse_size

SMALL = 2 * 1024**2


def small_plan(out, seed=11, shards=2, size=SMALL, **spec) -> DatasetPlan:
    return DatasetPlan(
        out=str(out), seed=seed, size_bytes=size, shard_count=shards, object_bytes=512 * 1024, spec=EventSpec(**spec)
    )


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def data_lines(root: Path) -> list[bytes]:
    return [line for p in sorted(root.rglob("*.jsonl")) for line in p.read_bytes().splitlines()]


def test_same_seed_and_shape_give_byte_identical_output(tmp_path):
    write_dataset(small_plan(tmp_path / "a"))
    write_dataset(small_plan(tmp_path / "b"))
    first = {k: v for k, v in read_tree(tmp_path / "a").items() if k.endswith(".jsonl")}
    second = {k: v for k, v in read_tree(tmp_path / "b").items() if k.endswith(".jsonl")}
    assert first and first == second


def test_different_seeds_give_different_events(tmp_path):
    write_dataset(small_plan(tmp_path / "a", seed=1))
    write_dataset(small_plan(tmp_path / "b", seed=2))
    ids = [{line[:52] for line in data_lines(tmp_path / d)} for d in "ab"]
    assert not ids[0] & ids[1]


def test_a_retried_shard_rewrites_the_same_keys_with_the_same_bytes(tmp_path):
    plan = small_plan(tmp_path)
    write_dataset(plan)
    before = read_tree(tmp_path)
    write_shard(plan, 1)
    assert read_tree(tmp_path) == before


@pytest.mark.parametrize(
    "other",
    [
        {"size": SMALL + 4096},
        {"devices": 7},
        {"days": 3},
        {"defect_rates": {**DEFAULT_DEFECT_RATES, "malformed_json": 0.1}},
    ],
)
def test_another_dataset_with_the_same_seed_never_rewrites_an_object_already_written(tmp_path, other):
    write_dataset(small_plan(tmp_path / "lake"))
    before = read_tree(tmp_path / "lake")
    write_dataset(small_plan(tmp_path / "lake", **other))
    write_dataset(small_plan(tmp_path / "alone", **other))
    after = read_tree(tmp_path / "lake")
    assert {key: after[key] for key in before} == before
    assert not set(before) & set(read_tree(tmp_path / "alone"))


def test_output_size_is_close_to_the_requested_size(tmp_path):
    write_dataset(small_plan(tmp_path, size=4 * 1024**2))
    written = sum(p.stat().st_size for p in tmp_path.rglob("*.jsonl"))
    assert abs(written - 4 * 1024**2) / (4 * 1024**2) < 0.02


def test_every_shard_writes_a_manifest_listing_its_objects(tmp_path):
    plan = small_plan(tmp_path, shards=3)
    write_dataset(plan)
    manifests = read_manifests(str(tmp_path), seed=plan.seed)
    assert sorted(m["shard_index"] for m in manifests) == [0, 1, 2]
    listed = sorted(key for m in manifests for key in m["objects"])
    assert listed == sorted(str(p) for p in tmp_path.rglob("*.jsonl"))
    assert sum(m["bytes"] for m in manifests) == sum(p.stat().st_size for p in tmp_path.rglob("*.jsonl"))


def test_ground_truth_matches_an_independent_reading_of_the_lines(tmp_path):
    """Classify every written line with plain json and compare with the manifests' counts."""
    plan = small_plan(tmp_path, size=6 * 1024**2)
    truth = summarise([asdict(m) for m in write_dataset(plan)])
    lines = data_lines(tmp_path)
    assert len(lines) == truth["records"]

    malformed = 0
    seen = Counter()
    canonical_cities = {c.name for c in CITIES}
    variants = 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            malformed += 1
            continue
        seen[line] += 1
        if record.get("location", {}).get("city") not in canonical_cities:
            variants += 1
    assert malformed == truth["quarantined"]["malformed_json"]
    assert sum(n - 1 for n in seen.values()) == truth["duplicates"]
    assert variants == truth["city_variants"]
    assert truth["gold"] == truth["records"] - sum(truth["quarantined"].values()) - truth["duplicates"]


def test_clean_lines_parse_to_realistic_readings(tmp_path):
    write_dataset(small_plan(tmp_path, defect_rates={}))
    records = [json.loads(line) for line in data_lines(tmp_path)]
    assert records and all(-40 <= r["temperature_c"] <= 85 and 0 <= r["humidity_pct"] <= 100 for r in records)
    assert all(0 <= r["battery_pct"] <= 100 for r in records)
    assert {r["location"]["city"] for r in records} <= {c.name for c in CITIES}
    assert len({r["event_id"] for r in records}) == len(records)


def test_a_defect_rate_of_zero_produces_none_of_that_defect(tmp_path):
    rates = dict(DEFAULT_DEFECT_RATES, malformed_json=0.0, duplicate=0.0)
    truth = summarise([asdict(m) for m in write_dataset(small_plan(tmp_path, defect_rates=rates))])
    assert truth["quarantined"]["malformed_json"] == 0 and truth["duplicates"] == 0
    assert all(truth["quarantined"][kind] > 0 for kind in QUARANTINE_KINDS if kind != "malformed_json")


@pytest.mark.parametrize(
    "text,expected", [("64MiB", 64 * 2**20), ("5GiB", 5 * 2**30), ("1.5GB", 1_500_000_000), ("4096", 4096)]
)
def test_sizes_parse_with_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12 parsecs", "-5MiB", "MiB"])
def test_bad_sizes_are_rejected_with_a_clear_message(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_unknown_defect_kinds_are_rejected():
    with pytest.raises(ValueError, match="unknown defect kinds"):
        EventSpec(defect_rates={"gremlins": 0.1})


@mock_aws
def test_s3_output_is_streamed_by_multipart_upload_and_equals_the_local_output(tmp_path):
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="bronze")
    s3_plan = small_plan("s3://bronze/raw", shards=1)
    write_shard(s3_plan, 0, s3_client=client)
    write_dataset(small_plan(tmp_path / "raw", shards=1))
    local = {p.name: p.read_bytes() for p in (tmp_path / "raw").rglob("*.jsonl")}
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="bronze", Prefix="raw/seed-11/")["Contents"]]
    remote = {k.rsplit("/", 1)[1]: client.get_object(Bucket="bronze", Key=k)["Body"].read() for k in keys}
    assert remote == local
    assert client.list_multipart_uploads(Bucket="bronze").get("Uploads", []) == []
