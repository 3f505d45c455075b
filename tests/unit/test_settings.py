"""Settings are parsed once from the environment into a typed model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from iotpipe.settings import Settings

ENV = {
    "BRONZE_URI": "s3://bronze/raw",
    "GOLD_URI": "s3://gold/iot_transformed",
    "QUARANTINE_URI": "s3://gold/quarantine",
    "CHECKPOINT_URI": "s3://artifacts/checkpoints/bronze-to-gold",
    "RUNS_URI": "s3://artifacts/runs",
    "UNCOMMITTED_URI": "s3://gold/_uncommitted",
    "SPARK_JOB_URI": "s3://artifacts/spark/job.py",
    "SPARK_PY_FILES_URI": "s3://artifacts/spark/iotpipe_spark.zip",
    "EMR_CORE_INSTANCE_COUNT": "3",
    "DEFAULT_SHARDS": "8",
    "UNRELATED": "ignored",
}


def test_settings_parse_and_type_the_environment():
    settings = Settings.from_env(ENV)
    assert settings.gold_uri == "s3://gold/iot_transformed"
    assert settings.emr_core_instance_count == 3 and settings.default_shards == 8


def test_a_missing_required_variable_is_a_clear_error():
    env = {k: v for k, v in ENV.items() if k != "GOLD_URI"}
    with pytest.raises(ValidationError, match="gold_uri"):
        Settings.from_env(env)


def test_settings_round_trip_through_the_environment():
    settings = Settings.from_env(ENV)
    assert Settings.from_env(settings.to_env()) == settings


def test_a_local_lake_mirrors_the_buckets_prefixes(tmp_path):
    settings = Settings.for_local_lake(str(tmp_path))
    assert settings.bronze_uri == f"{tmp_path}/bronze/raw"
    assert settings.gold_uri == f"{tmp_path}/gold/iot_transformed"


def test_the_transient_cluster_uses_the_configured_instances():
    instances = Settings.from_env({**ENV, "SUBNET_ID": "subnet-1", "EMR_INSTANCE_TYPE": "r6g.xlarge"}).emr_instances()
    assert instances["Ec2SubnetId"] == "subnet-1"
    assert [g["InstanceCount"] for g in instances["InstanceGroups"]] == [1, 3]
    assert {g["InstanceType"] for g in instances["InstanceGroups"]} == {"r6g.xlarge"}
