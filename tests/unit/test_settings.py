"""Settings are parsed once from the environment into a typed model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from iotpipe.lake.horizon import horizon_days
from iotpipe.run.settings import Settings
from iotpipe.run.spark_args import SparkJobArgs

ROOT = Path(__file__).resolve().parents[2]

ENV = {
    "BRONZE_URI": "s3://bronze/raw",
    "GOLD_URI": "s3://gold/iot_transformed",
    "QUARANTINE_URI": "s3://gold/quarantine",
    "CHECKPOINT_URI": "s3://artifacts/checkpoints/bronze-to-gold",
    "RUNS_URI": "s3://artifacts/runs",
    "CATALOG_URI": "glue",
    "CATALOG_DATABASE": "iotpipe_prod",
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
    assert (settings.catalog_uri, settings.catalog_database) == ("glue", "iotpipe_prod")


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
    assert settings.catalog_uri == f"jdbc:sqlite:{tmp_path}/catalog/iceberg.db"


def test_the_transient_cluster_uses_the_configured_instances():
    instances = Settings.from_env({**ENV, "SUBNET_ID": "subnet-1", "EMR_INSTANCE_TYPE": "r6g.xlarge"}).emr_instances()
    assert instances["Ec2SubnetId"] == "subnet-1"
    assert [g["InstanceCount"] for g in instances["InstanceGroups"]] == [1, 3]
    assert {g["InstanceType"] for g in instances["InstanceGroups"]} == {"r6g.xlarge"}


def test_the_dedup_horizon_is_read_from_the_environment_passed_as_an_argument_and_checked():
    settings = Settings.from_env({**ENV, "DEDUP_HORIZON": "2 weeks"})
    argv = SparkJobArgs(bronze="b", gold="g", quarantine="q", checkpoint="c", run_id="r",
                        dedup_horizon=settings.dedup_horizon).to_argv()  # fmt: skip
    assert argv[argv.index("--dedup-horizon") + 1] == "2 weeks"
    for bad in ("0 days", "a fortnight", "10000 days"):
        with pytest.raises(ValidationError, match="dedup_horizon"):
            Settings.from_env({**ENV, "DEDUP_HORIZON": bad})


def test_every_horizon_the_template_allows_is_one_the_job_reads():
    """The stack's DedupHorizon pattern may be stricter than the job, never looser: a value it
    lets through that Settings refuses would fail every Lambda of the stack at start."""
    from tests.unit.test_quality import _CloudFormationLoader  # it imports this module

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CloudFormationLoader)
    parameter = template["Parameters"]["DedupHorizon"]
    pattern = re.compile(parameter["AllowedPattern"])
    assert parameter["Default"] == Settings.for_local_lake("lake").dedup_horizon
    assert pattern.fullmatch(parameter["Default"])
    samples = [f"{n} {unit}{s}" for n in ("0", "1", "7", "99", "999", "9999", "99999", "100000")
               for unit in ("hour", "day", "week") for s in ("", "s")]  # fmt: skip
    allowed = [sample for sample in samples if pattern.fullmatch(sample)]
    assert "99999 hours" in allowed and "9999 days" in allowed and "999 weeks" in allowed
    for sample in allowed:
        horizon_days(sample)
