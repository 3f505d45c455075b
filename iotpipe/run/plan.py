"""PlanRun: validate the execution input, then plan generator shards and the Spark step.

Reads the checkpoint (to remember where this run starts) but writes nothing: a rejected input
or an incomplete deployment leaves no trace.
"""

from __future__ import annotations

import hashlib
import re
import zlib

from pydantic import ValidationError

from iotpipe.lake.checkpoint import STREAMING_QUERY, check_lake_layout, query_checkpoint, read_checkpoint
from iotpipe.lake.storage import Storage, join
from iotpipe.run.execution_names import bounded_execution_name
from iotpipe.run.models import (
    EMR_SERVERLESS,
    MAINTENANCE_FAULTS,
    PERSISTENT_FAULTS,
    ExecutionInput,
    InvalidExecutionInput,
    Lake,
    LeasePlan,
    RunPlan,
    S3ObjectEvent,
    ShardPlan,
    SparkAttempt,
    TaskTimeouts,
)
from iotpipe.run.quality import resolve_policy
from iotpipe.run.settings import Settings
from iotpipe.run.sizes import MAX_GENERATE_BYTES, parse_size
from iotpipe.run.spark_args import SparkJobArgs

MIN_SHARD_BYTES = 1024 * 1024


class SparkArtifactsMissing(RuntimeError):
    """The Spark job's code is not where the stack runs it from: the deployment is incomplete.

    Raised by PlanRun before any side effect; the state machine does not catch it, so the
    execution fails at once with this error and its message instead of in an EMR step.
    """


def check_spark_artifacts(settings: Settings, storage: Storage) -> None:
    scripts = (settings.spark_job_uri, maintenance_script_uri(settings), settings.spark_py_files_uri)
    missing = [uri for uri in scripts if uri and not storage.exists(uri)]
    if missing:
        raise SparkArtifactsMissing(
            f"the Spark job is not deployed: {', '.join(missing)} not found. Upload spark/job.py, "
            "spark/maintain.py and iotpipe_spark.zip to the artifacts bucket's spark/ prefix (`make deploy` does "
            "it after `sam deploy`, step 3 of scripts/deploy.sh), then start the run again"
        )
    check_job_dependencies(settings, storage)


def check_job_dependencies(settings: Settings, storage: Storage) -> None:
    """The job's third-party modules: on EMR on EC2 the bootstrap action that installs them and
    their wheelhouse (its requirements.txt names them), on EMR Serverless the archive of them the
    job run unpacks. Without them the job cannot import boto3."""
    if settings.spark_runtime == EMR_SERVERLESS:
        needed = (settings.spark_deps_archive_uri,)
    else:
        wheels = join(settings.spark_wheels_uri, "requirements.txt") if settings.spark_wheels_uri else ""
        needed = (settings.spark_bootstrap_uri, wheels)
    missing = [uri for uri in needed if uri and not storage.exists(uri)]
    if missing:
        raise SparkArtifactsMissing(
            f"the Spark job's dependencies are not deployed: {', '.join(missing)} not found. `make deploy` uploads "
            "them, built from spark/requirements-emr.txt (step 3 of scripts/deploy.sh), then start the run again"
        )


def parse_execution_input(raw: object) -> tuple[ExecutionInput, str]:
    """The typed input and its trigger; raise InvalidExecutionInput with every problem listed."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidExecutionInput(f"execution input must be a JSON object, got {type(raw).__name__}")
    if raw.get("source") == "aws.s3" or "detail-type" in raw:
        try:
            S3ObjectEvent.model_validate(raw)
        except ValidationError as error:
            raise InvalidExecutionInput(_describe(error)) from None
        return ExecutionInput(generate=False), "s3-event"
    try:
        request = ExecutionInput.model_validate(raw)
    except ValidationError as error:
        raise InvalidExecutionInput(_describe(error)) from None
    return request, request.started_by


def _describe(error: ValidationError) -> str:
    return "invalid execution input: " + _problems(error)


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors())


def _latest_batches(storage: Storage, checkpoint_uri: str, position: str) -> dict[str, int]:
    """`last_planned` or `last_committed` batch of the query; -1 when it has not run yet."""
    batch = getattr(read_checkpoint(storage, query_checkpoint(checkpoint_uri)), position)
    return {STREAMING_QUERY: batch if batch is not None else -1}


def planned_batches(storage: Storage, checkpoint_uri: str) -> dict[str, int]:
    """The query's latest planned (offsets) batch."""
    return _latest_batches(storage, checkpoint_uri, "last_planned")


def committed_batches(storage: Storage, checkpoint_uri: str) -> dict[str, int]:
    """The query's latest committed batch."""
    return _latest_batches(storage, checkpoint_uri, "last_committed")


def spark_submit(settings: Settings) -> list[str]:
    submit = ["spark-submit", "--deploy-mode", "cluster", "--conf", "spark.yarn.maxAppAttempts=1"]
    if settings.spark_py_files_uri:
        submit += ["--py-files", settings.spark_py_files_uri]
    return submit


def maintenance_script_uri(settings: Settings) -> str:
    """spark/maintain.py, deployed beside spark/job.py."""
    return settings.spark_job_uri.rsplit("/", 1)[0] + "/maintain.py" if "/" in settings.spark_job_uri else "maintain.py"


SERVERLESS_EXECUTORS = 2


def serverless_submit_parameters(settings: Settings) -> str:
    """A job run's SparkSubmitParameters: EMR Serverless splits them on spaces, so no value has one.
    Iceberg's runtime comes from the release's image; the job's package and its pinned modules
    from the artifacts bucket (the archive unpacked as ./deps beside the driver and executors)."""
    conf = {
        "spark.jars": settings.serverless_iceberg_jar,
        # EMR Serverless lets dynamic allocation grow without bound by default; the job's batches
        # need a driver and two executors (docs/design.md's cost model), as EMR on EC2's default cluster has.
        "spark.dynamicAllocation.initialExecutors": str(SERVERLESS_EXECUTORS),
        "spark.dynamicAllocation.maxExecutors": str(SERVERLESS_EXECUTORS),
    }
    if settings.spark_py_files_uri:
        conf["spark.submit.pyFiles"] = settings.spark_py_files_uri
    if settings.spark_deps_archive_uri:
        conf["spark.archives"] = f"{settings.spark_deps_archive_uri}#deps"
        conf["spark.emr-serverless.driverEnv.PYTHONPATH"] = "./deps"
        conf["spark.executorEnv.PYTHONPATH"] = "./deps"
    unsplittable = [f"{key}={value}" for key, value in conf.items() if not value or any(c.isspace() for c in value)]
    if unsplittable:
        raise ValueError(f"Spark settings of a job run cannot be empty or hold a space: {unsplittable}")
    return " ".join(f"--conf {key}={value}" for key, value in conf.items())


def serverless_job_driver(script_uri: str, arguments: list[str], settings: Settings) -> dict:
    """StartJobRun's JobDriver: the same script and arguments an EMR step's spark-submit runs."""
    return {"SparkSubmit": {"EntryPoint": script_uri, "EntryPointArguments": arguments,
                            "SparkSubmitParameters": serverless_submit_parameters(settings)}}  # fmt: skip


def client_token(execution_id: str, run_id: str) -> str:
    """StartJobRun's idempotency token: one per job run the execution means to start."""
    return hashlib.sha256(f"{execution_id}|{run_id}".encode()).hexdigest()[:40]


def maintenance_arguments(run_id: str, settings: Settings, fault: str | None = None) -> list[str]:
    """spark/maintain.py's arguments, for an EMR step or a job run."""
    args = ["--gold", settings.gold_uri, "--checkpoint", settings.checkpoint_uri, "--runs", settings.runs_uri,
            "--catalog", settings.catalog_uri, "--catalog-database", settings.catalog_database,
            "--run-id", run_id]  # fmt: skip
    if settings.lease_store:
        args += ["--lease", settings.lease_store, "--lease-key", settings.lease_key, "--lease-holder", run_id,
                 "--lease-seconds", str(settings.lease_seconds)]  # fmt: skip
    if settings.aws_region:
        args += ["--region", settings.aws_region]
    if fault in MAINTENANCE_FAULTS:
        args += ["--fault", fault]
    return args


def maintenance_step_args(run_id: str, settings: Settings, fault: str | None = None) -> list[str]:
    """The EMR step that maintains the tables after the run's VerifyGold (spark/maintain.py)."""
    return [*spark_submit(settings), maintenance_script_uri(settings), *maintenance_arguments(run_id, settings, fault)]


def spark_attempt(
    plan_run_id: str,
    number: int,
    settings: Settings,
    fault: str | None,
    planned_before: dict,
    committed_before: dict | None = None,
    execution_id: str = "",
) -> SparkAttempt:
    """The EMR step's spark-submit command for attempt `number` (a resume reruns the same job)."""
    run_id = f"{plan_run_id}-attempt-{number}"
    applies = fault not in (None, *MAINTENANCE_FAULTS) and (number == 1 or fault in PERSISTENT_FAULTS)
    job = SparkJobArgs(
        bronze=settings.bronze_uri,
        gold=settings.gold_uri,
        quarantine=settings.quarantine_uri,
        checkpoint=settings.checkpoint_uri,
        run_id=run_id,
        catalog=settings.catalog_uri,
        catalog_database=settings.catalog_database,
        execution=execution_id,
        max_files_per_trigger=settings.max_files_per_trigger,
        shuffle_partitions=settings.shuffle_partitions,
        dedup_horizon=settings.dedup_horizon,
        fault=fault if applies else None,
        lease=settings.lease_store or None,
        lease_key=settings.lease_key,
        lease_holder=plan_run_id,
        lease_seconds=settings.lease_seconds,
        region=settings.aws_region or None,
    )
    serverless = settings.spark_runtime == EMR_SERVERLESS
    return SparkAttempt(
        number=number,
        run_id=run_id,
        step_args=[*spark_submit(settings), settings.spark_job_uri, *job.to_argv()],
        job_driver=serverless_job_driver(settings.spark_job_uri, job.to_argv(), settings) if serverless else None,
        client_token=client_token(execution_id, run_id) if serverless else "",
        planned_before=planned_before,
        committed_before=committed_before or {},
    )


def plan_run(
    raw_input: object, execution_name: str, settings: Settings, storage: Storage, execution_id: str = ""
) -> RunPlan:
    request, trigger = parse_execution_input(raw_input)
    size = parse_size(request.size or settings.default_size)
    shard_count = request.shards or settings.default_shards
    if request.generate and size > MAX_GENERATE_BYTES and not request.allow_large:
        raise InvalidExecutionInput(
            f"invalid execution input: size {size:,} bytes is over {MAX_GENERATE_BYTES // 2**30} GiB; "
            'set "allow_large": true to generate it on purpose'
        )
    if request.generate and size // shard_count < MIN_SHARD_BYTES:
        raise InvalidExecutionInput(
            f"invalid execution input: {shard_count} shards of {size} bytes are under 1 MiB each"
        )
    try:
        quality = resolve_policy(settings.quality_policy(), request.quality)
    except (ValidationError, ValueError) as error:
        problems = _problems(error) if isinstance(error, ValidationError) else str(error)
        raise ValueError(f"the deployment's quality policy (Quality* parameters) is not valid: {problems}") from None
    if request.fault_injection and not settings.fault_injection_allowed:
        raise InvalidExecutionInput(
            "invalid execution input: fault_injection is for tests and local runs; this deployment does not accept it"
        )
    if request.cluster_id and settings.spark_runtime == EMR_SERVERLESS:
        raise InvalidExecutionInput(
            "invalid execution input: cluster_id names an EMR cluster, and this deployment runs Spark on "
            "EMR Serverless (SparkRuntime=emr-serverless): leave cluster_id out"
        )
    check_spark_artifacts(settings, storage)
    check_lake_layout(storage, settings.checkpoint_uri, settings.gold_uri, settings.quarantine_uri)
    seed = request.seed if request.seed is not None else zlib.crc32(execution_name.encode())
    generation = (
        ShardPlan(
            shards=shard_count,
            last_index=shard_count - 1,
            bronze=settings.bronze_uri,
            size=str(size),
            shard_count=str(shard_count),
            seed=str(seed),
            days=str(request.days),
        )
        if request.generate
        else None
    )
    planned = planned_batches(storage, settings.checkpoint_uri)
    return RunPlan(
        run_id=execution_name,
        execution_id=execution_id,
        trigger=trigger,
        generate=request.generate,
        generation=generation,
        max_concurrency=request.max_concurrency or settings.default_max_concurrency,
        lake=Lake(
            bronze=settings.bronze_uri,
            gold=settings.gold_uri,
            quarantine=settings.quarantine_uri,
            checkpoint=settings.checkpoint_uri,
            runs=settings.runs_uri,
        ),
        cluster_id=request.cluster_id,
        transient_cluster=request.cluster_id is None,
        emr_instances=settings.emr_instances(),
        max_resume_attempts=request.max_resume_attempts,
        max_drain_rounds=settings.max_drain_rounds if request.max_drain_rounds is None else request.max_drain_rounds,
        lease=LeasePlan(
            store=settings.lease_store,
            key=settings.lease_key,
            seconds=settings.lease_seconds,
            initial_seconds=settings.lease_initial_seconds,
            wait_seconds=settings.lease_wait_seconds,
            wait_rounds=settings.lease_wait_rounds,
            clock_margin_seconds=settings.arrival_clock_margin_seconds,
        ),
        fault_injection=request.fault_injection,
        attempt=spark_attempt(
            execution_name,
            1,
            settings,
            request.fault_injection,
            planned,
            committed_batches(storage, settings.checkpoint_uri),
            execution_id,
        ),  # fmt: skip
        timeouts=TaskTimeouts(
            generate_shard=settings.generator_timeout_seconds,
            create_cluster=settings.cluster_timeout_seconds,
            spark_step=settings.spark_step_timeout_seconds,
            terminate_cluster=settings.terminate_timeout_seconds,
            maintenance_step=settings.maintenance_timeout_seconds,
        ),
        maintenance_step_args=maintenance_step_args(execution_name, settings, request.fault_injection),
        runtime=settings.spark_runtime,
        maintenance_job_driver=serverless_job_driver(
            maintenance_script_uri(settings),
            maintenance_arguments(execution_name, settings, request.fault_injection),
            settings,
        )
        if settings.spark_runtime == EMR_SERVERLESS
        else None,  # fmt: skip
        maintenance_after_commits=settings.maintenance_after_commits,
        maintenance_client_token=client_token(execution_id, f"{execution_name}-maintenance"),
        follow_up_name=follow_up_name(execution_name),
        quality=quality,
    )


_FOLLOW_UP = re.compile(r"^(?P<base>.+)-fu(?P<number>[0-9]+)$")


def follow_up_name(run_id: str) -> str:
    """`<run>-fu1`, then `<run>-fu2` for its own follow-up, and so on: deterministic (a retried
    start is the same execution) and within the 80-character name limit however long the chain."""
    match = _FOLLOW_UP.match(run_id)
    base, number = (match["base"], int(match["number"]) + 1) if match else (run_id, 1)
    return bounded_execution_name(base, f"fu{number}")
