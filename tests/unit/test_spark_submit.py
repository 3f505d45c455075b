"""The local spark-submit command: the job's heap is fixed at start, Iceberg's runtime and SQLite's
JDBC driver ship with every application (EMR has its own), fault injection inside a commit ships
its jar; and the steps PlanRun gives EMR carry the stack's region to the job's own S3 client."""

from __future__ import annotations

import pytest

from iotpipe.local import spark_submit
from iotpipe.local.spark_submit import INSIDE_COMMIT_FAULTS, JOB_SCRIPT, submit_command

LOCAL_JARS = ["/jars/iceberg-spark-runtime.jar", "/jars/sqlite-jdbc.jar"]


@pytest.fixture(autouse=True)
def jars(monkeypatch, tmp_path):
    """The pinned jars as `make install` fetches them, and the fault jar `make test` builds."""
    monkeypatch.setattr(spark_submit, "local_jars", lambda: list(LOCAL_JARS))
    faults = tmp_path / "iotpipe-faults.jar"
    faults.write_bytes(b"PK")
    monkeypatch.setattr(spark_submit, "FAULTS_JAR", faults)
    return faults


def _option(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, part in enumerate(command) if part == name]


def test_the_driver_heap_is_taken_whole_at_start():
    command = submit_command(["--bronze", "b"], driver_memory="1g")
    assert _option(command, "--driver-memory") == ["1g"]
    java_options = [c for c in _option(command, "--conf") if c.startswith("spark.driver.extraJavaOptions=")]
    assert len(java_options) == 1 and java_options[0].split()[-1] == "-Xms1g"


def test_the_job_and_its_arguments_come_last_with_icebergs_runtime_and_the_catalogs_driver():
    command = submit_command(["--bronze", "b", "--gold", "g"])
    assert command[-5:] == [str(JOB_SCRIPT), "--bronze", "b", "--gold", "g"]
    assert _option(command, "--jars") == [",".join(LOCAL_JARS)]


@pytest.mark.parametrize("fault", [f"{name}:2" for name in INSIDE_COMMIT_FAULTS])
def test_a_fault_inside_an_iceberg_commit_ships_the_fault_jar_too(jars, fault):
    command = submit_command(["--bronze", "b", "--fault", fault])
    assert _option(command, "--jars") == [",".join([*LOCAL_JARS, str(jars)])]


def test_a_fault_outside_a_commit_needs_no_fault_jar(jars):
    jars.unlink()
    command = submit_command(["--bronze", "b", "--fault", "crash-after-gold:1"])
    assert _option(command, "--jars") == [",".join(LOCAL_JARS)]


def test_a_fault_inside_a_commit_without_its_jar_says_how_to_build_it(jars):
    jars.unlink()
    with pytest.raises(FileNotFoundError, match="make test"):
        submit_command(["--bronze", "b", "--fault", "crash-mid-batch:1"])


def test_the_jobs_and_the_maintenances_own_s3_clients_on_emr_get_the_stacks_region(monkeypatch):
    """On an EMR node boto3 resolves no region: the planned steps pass the stack's, and the job's
    own storage (its checkpoint notes, the lake layout check, maintenance's outcome) is made with it."""
    from moto import mock_aws

    from iotpipe.lake.storage import storage_for
    from iotpipe.run.plan import maintenance_step_args, spark_attempt
    from iotpipe.run.settings import Settings
    from spark.job import build_parser as job_parser
    from spark.maintain import build_parser as maintenance_parser

    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    settings = Settings.from_env(
        {"BRONZE_URI": "s3://bronze/raw", "GOLD_URI": "s3://gold/iot_transformed", "QUARANTINE_URI": "s3://gold/quarantine",
         "CHECKPOINT_URI": "s3://artifacts/checkpoints/bronze-to-gold", "RUNS_URI": "s3://artifacts/runs",
         "SPARK_JOB_URI": "s3://artifacts/spark/job.py", "SPARK_PY_FILES_URI": "s3://artifacts/spark/iotpipe_spark.zip",
         "AWS_REGION": "eu-west-1"}
    )  # fmt: skip
    job = spark_attempt("run-1", 1, settings, None, {}).step_args
    maintenance = maintenance_step_args("run-1", settings)
    parsed = [
        job_parser().parse_args(job[job.index("s3://artifacts/spark/job.py") + 1 :]),
        maintenance_parser().parse_args(maintenance[maintenance.index("s3://artifacts/spark/maintain.py") + 1 :]),
    ]
    with mock_aws():
        for args in parsed:
            assert args.region == "eu-west-1"
            assert storage_for(args.checkpoint, region=args.region)._client.meta.region_name == "eu-west-1"


def test_more_driver_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("IOTPIPE_SPARK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")
    (java_options,) = [c for c in _option(submit_command(["--bronze", "b"]), "--conf") if "extraJavaOptions" in c]
    assert java_options.split()[-2:] == ["-XX:TieredStopAtLevel=1", "-Xms2g"]
