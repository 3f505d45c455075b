"""PlanRun's logic: defaults for `{}`, the S3 trigger, and input or a deployment without the
Spark job rejected before any side effect. The lake is in moto S3, as on AWS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from iotpipe.lake.checkpoint import CheckpointLayoutUnsupported
from iotpipe.lake.storage import LocalStorage, S3Storage
from iotpipe.run.models import EMR_ON_EC2, EMR_SERVERLESS, InvalidExecutionInput
from iotpipe.run.plan import SparkArtifactsMissing, parse_execution_input, plan_run, serverless_submit_parameters
from iotpipe.run.settings import Settings

EVENTS = Path(__file__).parent.parent / "events"
ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ("spark/job.py", "spark/maintain.py", "spark/iotpipe_spark.zip")
# The bootstrap action that installs the job's third-party modules on EMR, and their wheelhouse;
# on EMR Serverless, the archive of the same modules.
DEPENDENCIES = ("spark/bootstrap/install-job-dependencies.sh", "spark/wheels/requirements.txt")
DEPENDENCY_ARCHIVE = "spark/iotpipe_spark_deps.tar.gz"


@pytest.fixture
def s3(monkeypatch):
    """The lake's and the artifacts' buckets, with the Spark job uploaded as `make deploy` does."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("lake", "artifacts"):
            client.create_bucket(Bucket=bucket)
        for key in ARTIFACTS + DEPENDENCIES + (DEPENDENCY_ARCHIVE,):
            client.put_object(Bucket="artifacts", Key=key, Body=b"uploaded")
        yield client


@pytest.fixture
def storage(s3) -> S3Storage:
    return S3Storage(s3)


@pytest.fixture
def settings() -> Settings:
    return Settings.for_local_lake(
        "s3://lake",
        spark_job_uri="s3://artifacts/spark/job.py",
        spark_py_files_uri="s3://artifacts/spark/iotpipe_spark.zip",
        spark_bootstrap_uri="s3://artifacts/spark/bootstrap/install-job-dependencies.sh",
        spark_wheels_uri="s3://artifacts/spark/wheels/",
        spark_deps_archive_uri=f"s3://artifacts/{DEPENDENCY_ARCHIVE}",
    )


@pytest.fixture
def serverless(settings) -> Settings:
    return settings.model_copy(update={"spark_runtime": EMR_SERVERLESS})


def test_an_empty_input_plans_a_generating_run_with_the_default_size(settings, storage):
    plan = plan_run({}, "exec-1", settings, storage)
    assert plan.generate and plan.trigger == "console"
    assert plan.generation.shards == settings.default_shards
    assert plan.generation.last_index == settings.default_shards - 1
    command = plan.generation.command(0)
    assert command[command.index("--size") + 1] == str(256 * 2**20)
    assert plan.transient_cluster and plan.cluster_id is None


def test_the_spark_step_runs_the_job_from_s3_with_its_package(settings, storage):
    args = plan_run({}, "exec-1", settings, storage).attempt.step_args
    job = args.index("s3://artifacts/spark/job.py")
    assert args[:job] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--conf",
        "spark.yarn.maxAppAttempts=1",
        "--py-files",
        "s3://artifacts/spark/iotpipe_spark.zip",
    ]
    assert args[args.index("--run-id") + 1] == "exec-1-attempt-1"
    assert args[args.index("--gold") + 1] == settings.gold_uri


def test_the_spark_step_remembers_ids_for_the_stacks_horizon(settings, storage):
    settings = settings.model_copy(update={"dedup_horizon": "3 weeks"})
    args = plan_run({}, "exec-1", settings, storage).attempt.step_args
    assert args[args.index("--dedup-horizon") + 1] == "3 weeks"


def test_the_seed_follows_the_execution_name_so_a_repeated_name_repeats_the_data(settings, storage):
    first = plan_run({}, "exec-1", settings, storage)
    again = plan_run({}, "exec-1", settings, storage)
    other = plan_run({}, "exec-2", settings, storage)
    assert first.generation == again.generation and first.generation.seed != other.generation.seed


def test_an_s3_object_created_event_processes_existing_bronze_without_generating(settings, storage):
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    plan = plan_run(event, "exec-3", settings, storage)
    assert (plan.trigger, plan.generate, plan.generation) == ("s3-event", False, None)


def test_a_test_fault_reaches_the_first_attempt_only(settings, storage):
    plan = plan_run({"fault_injection": "crash-mid-batch:1"}, "exec-4", settings, storage)
    assert "crash-mid-batch:1" in plan.attempt.step_args


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ({"size": "huge"}, "size"),
        ({"shards": 0}, "shards"),
        ({"max_resume_attempts": 9}, "max_resume_attempts"),
        ({"cluster_id": "cluster-1"}, "cluster_id"),
        ({"generate": "sometimes"}, "generate"),
        ({"generate": "no"}, "generate"),
        ({"generate": 0}, "generate"),
        ({"seed": True}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"shards": 2.0}, "shards"),
        ({"days": "3"}, "days"),
        ({"allow_large": 1}, "allow_large"),
        ({"typo": 1}, "typo"),
        ({"size": "1KiB", "shards": 4}, "under 1 MiB"),
        ({"size": "1PiB", "shards": 1000}, "not a size"),
        ({"size": "65GiB", "shards": 1000}, "allow_large"),
        ("{}", "JSON object"),
        ({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}, "detail-type"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_the_problem(settings, storage, raw, fragment):
    with pytest.raises(InvalidExecutionInput, match=fragment):
        plan_run(raw, "exec-5", settings, storage)
    assert storage.list("s3://lake/") == []


def test_every_problem_is_listed_at_once():
    with pytest.raises(InvalidExecutionInput) as caught:
        parse_execution_input({"size": "huge", "shards": -1})
    assert "size" in str(caught.value) and "shards" in str(caught.value)


@pytest.mark.parametrize("key", ARTIFACTS)
def test_a_stack_without_the_spark_job_uploaded_fails_in_plan_run_saying_what_to_upload(s3, settings, storage, key):
    s3.delete_object(Bucket="artifacts", Key=key)
    with pytest.raises(SparkArtifactsMissing) as caught:
        plan_run({}, "exec-6", settings, storage)
    assert f"s3://artifacts/{key}" in str(caught.value) and "make deploy" in str(caught.value)
    assert storage.list("s3://lake/") == []


@pytest.mark.parametrize("key", DEPENDENCIES)
def test_a_stack_without_the_jobs_dependencies_for_emr_fails_in_plan_run_saying_what_to_upload(
    s3, settings, storage, key
):
    s3.delete_object(Bucket="artifacts", Key=key)
    with pytest.raises(SparkArtifactsMissing) as caught:
        plan_run({}, "exec-6", settings, storage)
    assert f"s3://artifacts/{key}" in str(caught.value) and "make deploy" in str(caught.value)
    assert storage.list("s3://lake/") == []


def test_a_local_run_plans_with_the_repositorys_job(tmp_path):
    settings = Settings.for_local_lake(str(tmp_path), spark_job_uri=str(ROOT / "spark" / "job.py"))
    plan = plan_run({}, "exec-7", settings, LocalStorage())
    assert str(ROOT / "spark" / "job.py") in plan.attempt.step_args


def test_a_local_job_path_that_does_not_exist_is_refused_too(tmp_path):
    settings = Settings.for_local_lake(str(tmp_path), spark_job_uri=str(tmp_path / "missing" / "job.py"))
    with pytest.raises(SparkArtifactsMissing, match="missing/job.py"):
        plan_run({}, "exec-8", settings, LocalStorage())


def test_a_large_run_is_generated_only_when_asked_for_on_purpose(settings, storage):
    plan = plan_run({"size": "65GiB", "shards": 100, "allow_large": True}, "exec-9", settings, storage)
    assert plan.generation.size == str(65 * 2**30) and "--allow-large" in plan.generation.command(0)


def test_the_plan_carries_the_deployments_quality_policy_with_the_inputs_overrides(storage):
    settings = Settings.for_local_lake(
        "s3://lake",
        spark_job_uri="s3://artifacts/spark/job.py",
        quality_max_quarantine_ratio_by_reason="malformed_json=0.01",
        quality_on_breach="fail",
    )
    plan = plan_run({"quality": {"min_gold_rows": 10, "max_quarantine_ratio_by_reason": {"missing_city": 0}}},
                    "exec-1", settings, storage)  # fmt: skip
    assert plan.quality.min_gold_rows == 10 and plan.quality.on_breach == "fail"
    assert plan.quality.max_quarantine_ratio_by_reason == {"malformed_json": 0.01, "missing_city": 0.0}
    assert plan_run({}, "exec-1", settings, storage).quality == settings.quality_policy()


@pytest.mark.parametrize(
    "quality,message",
    [
        ({"max_quarantine_ratio": 1.5}, "quality.max_quarantine_ratio"),
        ({"max_quarantine_ratio": -0.1}, "quality.max_quarantine_ratio"),
        ({"max_quarantine_ratio": True}, "quality.max_quarantine_ratio"),
        ({"max_quarantine_ratio": "0.1"}, "quality.max_quarantine_ratio"),
        ({"min_gold_rows": False}, "quality.min_gold_rows"),
        ({"max_duplicate_ratio": "lots"}, "quality.max_duplicate_ratio"),
        ({"min_gold_rows": -1}, "quality.min_gold_rows"),
        ({"on_breach": "panic"}, "quality.on_breach"),
        ({"max_quarantine_ratio_by_reason": {"not_a_reason": 0.1}}, "unknown reason code 'not_a_reason'"),
        ({"max_quarantine_ratio_by_reason": {"malformed_json": 2}}, "quality.max_quarantine_ratio_by_reason"),
        ({"max_quarantine_ratio_by_reason": ["malformed_json"]}, "quality.max_quarantine_ratio_by_reason"),
        ({"max_quarantine_ration": 0.1}, "quality.max_quarantine_ration"),
        ("strict", "quality"),
    ],
)
def test_a_bad_quality_policy_is_rejected_before_any_side_effect(settings, storage, s3, quality, message):
    with pytest.raises(InvalidExecutionInput, match="invalid execution input") as error:
        plan_run({"quality": quality}, "exec-1", settings, storage)
    assert message in str(error.value)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="lake").get("Contents", [])] == []


def test_a_bad_quality_parameter_of_the_deployment_fails_plan_run_clearly(storage):
    settings = Settings.for_local_lake(
        "s3://lake", spark_job_uri="s3://artifacts/spark/job.py", quality_max_quarantine_ratio_by_reason="bogus=0.1"
    )
    with pytest.raises(ValueError, match=r"Quality\* parameters.*unknown reason code 'bogus'"):
        plan_run({}, "exec-1", settings, storage)


def test_a_deployment_refuses_fault_injection_before_any_side_effect(settings, storage):
    deployed = settings.model_copy(update={"fault_injection_allowed": False})  # what the template's Lambdas get
    with pytest.raises(InvalidExecutionInput, match="fault_injection is for tests"):
        plan_run({"fault_injection": "fail-at-start"}, "exec-9", deployed, storage)


@pytest.mark.parametrize(
    "keys, message",
    [
        pytest.param(
            [
                "artifacts/checkpoints/bronze-to-gold/gold/offsets/0",
                "artifacts/checkpoints/bronze-to-gold/quarantine/offsets/0",
            ],
            "one query per sink: gold, quarantine",
            id="two-query-checkpoint",
        ),
        pytest.param(
            ["gold/iot_transformed/_spark_metadata/0"],
            "s3://lake/gold/iot_transformed holds plain Parquet written by an earlier iotpipe",
            id="plain-parquet-gold",
        ),
        pytest.param(
            [
                "artifacts/checkpoints/bronze-to-gold/transform/offsets/0",
                "gold/iot_transformed/_spark_metadata/9.compact",
                "gold/quarantine/_spark_metadata/0",
            ],
            "s3://lake/gold/iot_transformed, s3://lake/gold/quarantine hold plain Parquet",
            id="plain-parquet-sinks-beside-a-one-query-checkpoint",
        ),
    ],
)
def test_a_lake_the_job_cannot_continue_is_refused_before_any_side_effect(s3, settings, storage, keys, message):
    for key in keys:
        s3.put_object(Bucket="lake", Key=key, Body=b"v1\n{}")
    with pytest.raises(CheckpointLayoutUnsupported, match=message):
        plan_run({}, "exec-7", settings, storage)
    assert sorted(info.uri for info in storage.list("s3://lake/")) == sorted(f"s3://lake/{key}" for key in keys)


def test_a_checkpoint_of_one_query_beside_iceberg_tables_is_planned(s3, settings, storage):
    keys = ("artifacts/checkpoints/bronze-to-gold/transform/offsets/0",
            "artifacts/checkpoints/bronze-to-gold/transform/commits/0",
            "gold/iot_transformed/metadata/00001-x.metadata.json",
            "gold/iot_transformed/data/date=2026-01-01/location_city=Oslo/00000-0-x.parquet")  # fmt: skip
    for key in keys:
        s3.put_object(Bucket="lake", Key=key, Body=b"v1\n{}")
    plan = plan_run({}, "exec-8", settings, storage)
    assert plan.attempt.planned_before == {"transform": 0} and plan.attempt.committed_before == {"transform": 0}


def test_the_plan_maintains_the_tables_with_the_deployed_script_after_the_run(settings, storage):
    plan = plan_run({}, "exec-10", settings, storage, execution_id="arn:aws:states:us-east-1:1:execution:m:exec-10")
    args = plan.maintenance_step_args
    script = args.index("s3://artifacts/spark/maintain.py")
    assert args[:script] == plan.attempt.step_args[: plan.attempt.step_args.index("s3://artifacts/spark/job.py")]
    options = dict(zip(args[script + 1 :: 2], args[script + 2 :: 2]))
    assert options["--run-id"] == "exec-10" and options["--checkpoint"] == settings.checkpoint_uri
    assert options["--runs"] == settings.runs_uri and options["--catalog"] == settings.catalog_uri
    assert plan.execution_id == "arn:aws:states:us-east-1:1:execution:m:exec-10"
    assert plan.timeouts.maintenance_step == settings.maintenance_timeout_seconds


@pytest.mark.parametrize("lease_store", ["dynamodb://leases?region=us-east-1", ""])
def test_every_commit_of_every_attempt_is_tagged_with_the_plans_run_and_execution(storage, lease_store):
    """The job tags each batch's last commit with the run (its lease holder, else its own run id)
    and the execution: VerifyGold and the dead-run reports find the run's batches by these tags."""
    from spark.job import build_parser

    settings = Settings.for_local_lake("s3://lake", spark_job_uri="s3://artifacts/spark/job.py",
                                       lease_store=lease_store)  # fmt: skip
    plan = plan_run({}, "exec-11", settings, storage, execution_id="arn:aws:states:us-east-1:1:execution:m:exec-11")
    step = plan.attempt.step_args
    args = build_parser().parse_args(step[step.index("s3://artifacts/spark/job.py") + 1 :])
    assert args.run_id == "exec-11-attempt-1"
    assert (args.lease_holder or args.run_id) == plan.run_id and args.execution == plan.execution_id


def test_the_generated_days_travel_to_every_shard_and_a_bad_span_is_refused(settings, storage):
    command = plan_run({"days": 1}, "exec-1", settings, storage).generation.command(3)
    assert command[command.index("--days") + 1] == "1" and command[command.index("--shard-index") + 1] == "3"
    assert plan_run({}, "exec-1", settings, storage).generation.days == "7"
    for bad in (0, 3651, "two"):
        with pytest.raises(InvalidExecutionInput, match="days"):
            plan_run({"days": bad}, "exec-1", settings, storage)


# ---------------------------------------------------------------- EMR Serverless
def test_on_emr_serverless_the_job_run_runs_the_same_script_and_arguments_as_the_step(settings, serverless, storage):
    step = plan_run({}, "exec-9", settings, storage, execution_id="arn:exec-9")
    job_run = plan_run({}, "exec-9", serverless, storage, execution_id="arn:exec-9")
    assert (step.runtime, job_run.runtime) == (EMR_ON_EC2, EMR_SERVERLESS)
    assert step.attempt.job_driver is None and step.maintenance_job_driver is None
    submit = job_run.attempt.job_driver["SparkSubmit"]
    script = step.attempt.step_args.index(submit["EntryPoint"])
    assert submit["EntryPointArguments"] == step.attempt.step_args[script + 1 :]
    maintenance = job_run.maintenance_job_driver["SparkSubmit"]
    assert [maintenance["EntryPoint"], *maintenance["EntryPointArguments"]] == step.maintenance_step_args[-len(
        maintenance["EntryPointArguments"]) - 1 :]  # fmt: skip
    conf = submit["SparkSubmitParameters"].split()
    assert conf[::2] == ["--conf"] * (len(conf) // 2)
    assert f"spark.archives=s3://artifacts/{DEPENDENCY_ARCHIVE}#deps" in conf
    assert "spark.submit.pyFiles=s3://artifacts/spark/iotpipe_spark.zip" in conf


def test_each_job_run_has_its_timeout_and_its_own_idempotency_token(serverless, storage):
    plan = plan_run({}, "exec-10", serverless.model_copy(update={"spark_step_timeout_seconds": 3601}), storage,
                    execution_id="arn:exec-10")  # fmt: skip
    assert plan.model_dump()["timeouts"]["spark_job_minutes"] == 61  # the state's timeout, rounded up
    assert plan.model_dump()["timeouts"]["maintenance_job_minutes"] == 60
    again = plan_run({}, "exec-10", serverless, storage, execution_id="arn:exec-10")
    other = plan_run({}, "exec-10", serverless, storage, execution_id="arn:another-exec-10")
    tokens = {plan.attempt.client_token, plan.maintenance_client_token, other.attempt.client_token}
    assert len(tokens) == 3 and again.attempt.client_token == plan.attempt.client_token
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", token) for token in tokens)


def test_on_emr_serverless_a_cluster_id_is_refused_before_any_side_effect(serverless, storage):
    with pytest.raises(InvalidExecutionInput, match="EMR Serverless"):
        plan_run({"cluster_id": "j-123"}, "exec-11", serverless, storage)
    assert storage.list("s3://lake/") == []


def test_on_emr_serverless_a_missing_dependency_archive_fails_in_plan_run(s3, serverless, storage):
    s3.delete_object(Bucket="artifacts", Key=DEPENDENCY_ARCHIVE)
    for key in DEPENDENCIES:  # the cluster's bootstrap and wheels are not what a job run needs
        s3.delete_object(Bucket="artifacts", Key=key)
    with pytest.raises(SparkArtifactsMissing, match=DEPENDENCY_ARCHIVE):
        plan_run({}, "exec-12", serverless, storage)


def test_a_spark_setting_with_a_space_cannot_reach_a_job_run(serverless):
    with pytest.raises(ValueError, match="space"):
        serverless_submit_parameters(serverless.model_copy(update={"serverless_iceberg_jar": "/a path/x.jar"}))


def test_numbers_as_json_writes_them_are_accepted(settings, storage):
    """Strict types refuse `true` for a ratio, never an integer where a ratio is asked."""
    plan = plan_run(
        {"generate": False, "seed": 3, "quality": {"max_quarantine_ratio": 0, "max_duplicate_ratio": 1}},
        "exec-1",
        settings,
        storage,
    )
    assert (plan.quality.max_quarantine_ratio, plan.quality.max_duplicate_ratio) == (0.0, 1.0)


def test_a_job_run_is_capped_at_the_executors_the_cost_model_assumes(serverless):
    """EMR Serverless's dynamic allocation has no upper bound by default: uncapped, a job run could
    take the application's whole ServerlessMaximumVcpu."""
    parameters = serverless_submit_parameters(serverless).split()
    assert "spark.dynamicAllocation.maxExecutors=2" in parameters
    assert "spark.dynamicAllocation.initialExecutors=2" in parameters
