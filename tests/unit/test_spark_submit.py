"""The local spark-submit command: the job's heap is fixed at start and fault injection ships its jar."""

from __future__ import annotations

from iotpipe.spark_submit import FAULTS_JAR, JOB_SCRIPT, submit_command


def _option(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, part in enumerate(command) if part == name]


def test_the_driver_heap_is_taken_whole_at_start():
    command = submit_command(["--bronze", "b"], driver_memory="1g")
    assert _option(command, "--driver-memory") == ["1g"]
    java_options = [c for c in _option(command, "--conf") if c.startswith("spark.driver.extraJavaOptions=")]
    assert len(java_options) == 1 and java_options[0].split()[-1] == "-Xms1g"


def test_the_job_and_its_arguments_come_last():
    command = submit_command(["--bronze", "b", "--gold", "g"])
    assert command[-5:] == [str(JOB_SCRIPT), "--bronze", "b", "--gold", "g"]
    assert "--jars" not in command


def test_a_crash_fault_ships_the_fault_jar():
    command = submit_command(["--bronze", "b", "--fault", "crash-mid-batch:2"])
    assert _option(command, "--jars") == [str(FAULTS_JAR)]


def test_the_jobs_own_s3_client_on_emr_gets_the_stacks_region(monkeypatch):
    """On an EMR node boto3 resolves no region: the planned step passes the stack's, and the
    job's ledger (its only S3 client outside Spark) is created with it."""
    import boto3
    from moto import mock_aws

    from iotpipe.planning import spark_attempt
    from iotpipe.settings import Settings
    from spark.job import build_parser, open_ledger

    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    settings = Settings.from_env(
        {"BRONZE_URI": "s3://bronze/raw", "GOLD_URI": "s3://gold/iot_transformed", "QUARANTINE_URI": "s3://gold/quarantine",
         "CHECKPOINT_URI": "s3://artifacts/checkpoints/bronze-to-gold", "RUNS_URI": "s3://artifacts/runs",
         "UNCOMMITTED_URI": "s3://gold/_uncommitted", "SPARK_JOB_URI": "s3://artifacts/spark/job.py",
         "SPARK_PY_FILES_URI": "s3://artifacts/spark/iotpipe_spark.zip", "AWS_REGION": "eu-west-1"}
    )  # fmt: skip
    step = spark_attempt("run-1", 1, settings, None, {}).step_args
    args = build_parser().parse_args(step[step.index("s3://artifacts/spark/job.py") + 1 :])
    assert args.region == "eu-west-1"
    with mock_aws():
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        ledger = open_ledger(args)
    assert ledger.storage._client.meta.region_name == "eu-west-1"
