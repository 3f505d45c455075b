"""The Spark job and table maintenance run with the EMR clusters' instance role (EMR on EC2) or
the job role (EMR Serverless); Hadoop's and Iceberg's S3 and Glue clients cannot be intercepted
locally, so what each touches is derived from a real plan's step arguments or job run (with the
deployed environment of the template) and evaluated against that role, on each runtime: the
Bronze it reads, the three Iceberg tables (data files, metadata, manifests, their expiry and
orphan removal) and their entries in the Glue Data Catalog, the checkpoint beside the seen-id
store, and maintenance's outcome for the run report."""

from __future__ import annotations

import pytest

from iotpipe.lake.storage import join, split_s3
from iotpipe.lake.tables import ICEBERG_TABLES, maintenance_outcome_uri, run_manifest_uri, seen_ids_location
from iotpipe.local import iam
from iotpipe.run.models import EMR_ON_EC2, EMR_SERVERLESS
from iotpipe.run.plan import (
    maintenance_arguments,
    maintenance_script_uri,
    maintenance_step_args,
    serverless_job_driver,
    spark_attempt,
)
from iotpipe.run.settings import Settings

ROLES = {EMR_ON_EC2: "EmrInstanceRole", EMR_SERVERLESS: "SparkJobRole"}
# The job's and maintenance's calls to the Glue Data Catalog through EMR's Iceberg (GlueCatalog):
# CREATE TABLE IF NOT EXISTS looks the database and the table up and creates it; every commit
# reads the table and swaps its metadata pointer.
CATALOG_ACTIONS = ("glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable")


@pytest.fixture(scope="module", params=[EMR_ON_EC2, EMR_SERVERLESS])
def runtime(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def stack(runtime):
    return iam.load_stack(world=iam.local_world(runtime))


@pytest.fixture(scope="module")
def role(runtime) -> str:
    return ROLES[runtime]


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    """The deployment's settings, as PlanRun reads them from its environment."""
    environment = stack.resolve(stack.resources["PlanRunFunction"]["Properties"]["Environment"]["Variables"])
    return Settings.from_env({k: str(v) for k, v in environment.items()})


def options(args: list[str], script_name: str) -> dict:
    script = next(i for i, a in enumerate(args) if a.endswith(script_name))
    return {"script": args[script], "py_files": args[args.index("--py-files") + 1],
            **dict(zip(args[script + 1 :: 2], args[script + 2 :: 2]))}  # fmt: skip


def job_run_options(job_driver: dict) -> dict:
    """A job run's script, package, dependency archive and arguments, as EMR Serverless reads them."""
    submit = job_driver["SparkSubmit"]
    tokens = submit["SparkSubmitParameters"].split()
    conf = dict(token.split("=", 1) for token in tokens[1::2])
    arguments = submit["EntryPointArguments"]
    return {"script": submit["EntryPoint"], "py_files": conf["spark.submit.pyFiles"],
            "archive": conf["spark.archives"].split("#", 1)[0],
            **dict(zip(arguments[::2], arguments[1::2]))}  # fmt: skip


@pytest.fixture(scope="module")
def step(settings) -> dict:
    """The job's arguments as PlanRun plans them on AWS: an EMR step's, or a job run's."""
    attempt = spark_attempt("run-1", 1, settings, None, {}, execution_id="arn:execution")
    if settings.spark_runtime == EMR_SERVERLESS:
        return job_run_options(attempt.job_driver)
    return options(attempt.step_args, "job.py")


@pytest.fixture(scope="module")
def maintenance(settings) -> dict:
    """Table maintenance's arguments as PlanRun plans its EMR step or job run (spark/maintain.py)."""
    if settings.spark_runtime == EMR_SERVERLESS:
        script = maintenance_script_uri(settings)
        return job_run_options(serverless_job_driver(script, maintenance_arguments("run-1", settings), settings))
    return options(maintenance_step_args("run-1", settings), "maintain.py")


def s3(action: str, uri: str) -> iam.Request:
    bucket, key = split_s3(uri)
    return iam.Request(action, f"arn:aws:s3:::{bucket}/{key}", {"aws:SecureTransport": "true"})


def listing(uri: str) -> iam.Request:
    bucket, key = split_s3(uri)
    return iam.Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"aws:SecureTransport": "true", "s3:prefix": key})


def glue(stack, actions, database: str, *tables: str) -> list[iam.Request]:
    prefix = f"arn:aws:glue:{stack.world.region}:{stack.world.account}"
    resources = [
        f"{prefix}:catalog",
        f"{prefix}:database/{database}",
        *(f"{prefix}:table/{database}/{t}" for t in tables),
    ]
    return [iam.Request(action, resource) for action in actions for resource in resources]


def tables_only(requests: list[iam.Request]) -> list[iam.Request]:
    """The requests on a table (a table's actions are authorized on the catalog and its database too)."""
    return [r for r in requests if ":table/" in r.resource]


def table_locations(gold: str, quarantine: str, checkpoint: str) -> dict[str, str]:
    return {"gold": gold, "quarantine": quarantine, "seen_ids": seen_ids_location(checkpoint)}


DATA = {"gold": "data/date=2024-01-01/location_city=St. John%27s/00000-0-a1b2.parquet",
        "quarantine": "data/reason=malformed_json/quarantined_at_day=2024-01-01/00000-0-a1b2.parquet",
        "seen_ids": "data/arrival_date=2024-01-01/00000-0-a1b2.parquet"}  # fmt: skip
METADATA = ("metadata/00003-5e1f.metadata.json", "metadata/snap-123-1-5e1f.avro", "metadata/5e1f-m0.avro")


def commits(location: str, table: str) -> list[iam.Request]:
    """A batch's commit to one table (S3FileIO: multipart uploads), and the old metadata files it deletes."""
    found = []
    for key in (DATA[table], *METADATA):
        found += [s3(a, join(location, key)) for a in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload")]
    return found + [s3("s3:DeleteObject", join(location, "metadata/00001-0a9c.metadata.json"))]


def lease(stack, options: dict) -> iam.Request:
    assert options["--lease"].removeprefix("dynamodb://").split("?", 1)[0] == stack.physical_name("LeaseTable")
    return iam.Request("dynamodb:UpdateItem", stack.get_att("LeaseTable", "Arn"))


def code(step: dict) -> list[iam.Request]:
    """What the step or job run fetches to start: the script, the package and (EMR Serverless) the modules' archive."""
    return [s3("s3:GetObject", step[key]) for key in ("script", "py_files", "archive") if key in step]


def what_the_job_does(step: dict, stack) -> list[iam.Request]:
    gold, quarantine, checkpoint = step["--gold"], step["--quarantine"], step["--checkpoint"]
    found = [listing(step["--bronze"] + "/"), s3("s3:GetObject", join(step["--bronze"], "seed-1/part-00001.jsonl")),
             *code(step)]  # fmt: skip
    # The lake layout check: a file sink log of the plain-Parquet Gold is refused.
    found += [listing(join(sink, "_spark_metadata") + "/") for sink in (gold, quarantine)]
    for table, location in table_locations(gold, quarantine, checkpoint).items():
        found += commits(location, table)
    found.append(listing(checkpoint + "/"))
    keys = ("transform/metadata", "transform/offsets/0", "transform/commits/0", "transform/sources/0/0",
            "transform/sources/0/9.compact", "ignored/batch-0.json", "ignored-noted.json", "runs/run-1-attempt-1.json",
            "last_run.json")  # fmt: skip
    for key in keys:
        found += [s3(a, join(checkpoint, key)) for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")]
    found += glue(stack, CATALOG_ACTIONS, step["--catalog-database"], *(t.name for t in ICEBERG_TABLES))
    return found + [lease(stack, step)] + emrfs_folder_keys(step)


def emrfs_folder_keys(step: dict) -> list[iam.Request]:
    """EMRFS writes `<folder>_$folder$` beside each folder it creates, its parents' too, and HEADs
    the folder keys: the sinks, the checkpoint and its parent (all created by the job) and Bronze."""
    found = []
    checkpoint_parent = step["--checkpoint"].rsplit("/", 1)[0]
    for folder in (step["--gold"], step["--quarantine"], step["--checkpoint"], checkpoint_parent):
        found.append(s3("s3:GetObject", folder))
        found += [s3(a, folder + "_$folder$") for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")]
    found += [s3("s3:GetObject", step["--bronze"]), s3("s3:GetObject", step["--bronze"] + "_$folder$")]
    return found


def what_maintenance_does(step: dict, quarantine: str, stack) -> list[iam.Request]:
    """spark/maintain.py: per table, rewrite data files and manifests (new files, new metadata),
    expire snapshots and remove orphans (list the table, delete data files, manifests, manifest
    lists and metadata files); read the checkpoint; note when orphans were removed; look for the
    manifests of unreported runs (a HEAD: 404 needs the listing); write its outcome for the report."""
    gold, checkpoint, runs = step["--gold"], step["--checkpoint"], step["--runs"]
    found = code(step)
    for table, location in table_locations(gold, quarantine, checkpoint).items():
        found += commits(location, table)
        found.append(listing(location + "/"))  # orphan removal lists the table's files
        for key in (DATA[table], *METADATA):
            found.append(s3("s3:DeleteObject", join(location, key)))  # expired or orphaned
    found += [listing(join(checkpoint, "transform", "offsets") + "/"), s3("s3:GetObject", join(checkpoint,
              "transform", "offsets", "0"))]  # fmt: skip
    orphans = join(checkpoint, "maintenance-orphans.json")
    found += [s3("s3:GetObject", orphans), s3("s3:PutObject", orphans)]
    manifest = run_manifest_uri(runs, "run-0")
    found += [s3("s3:GetObject", manifest), listing(manifest)]
    found += [
        s3(a, maintenance_outcome_uri(runs, step["--run-id"])) for a in ("s3:PutObject", "s3:AbortMultipartUpload")
    ]
    found += glue(stack, ("glue:GetTable", "glue:UpdateTable"), step["--catalog-database"],
                  *(t.name for t in ICEBERG_TABLES))  # fmt: skip
    return found + [lease(stack, step)]


def test_the_role_allows_everything_the_spark_job_does(step, stack, role):
    denied = [r for r in what_the_job_does(step, stack) if not stack.decide(role, r).allowed]
    assert denied == []


def test_the_role_allows_everything_table_maintenance_does(maintenance, settings, stack, role):
    assert maintenance["--run-id"] == "run-1" and maintenance["--catalog"] == "glue"
    denied = [r for r in what_maintenance_does(maintenance, settings.quarantine_uri, stack)
              if not stack.decide(role, r).allowed]  # fmt: skip
    assert denied == []


def test_the_role_cannot_change_the_jobs_code_the_run_reports_or_other_catalog_entries(step, stack, role):
    artifacts = f"s3://{stack.physical_name('ArtifactsBucket')}"
    runs = join(artifacts, "runs")
    database = step["--catalog-database"]
    forbidden = [
        s3("s3:PutObject", step["script"]),
        s3("s3:PutObject", step["py_files"]),
        s3("s3:DeleteObject", step["script"]),
        s3("s3:PutObject", join(artifacts, "spark", "maintain.py")),
        s3("s3:DeleteObject", join(artifacts, "checkpoints", "another-job", "offsets", "0")),
        s3("s3:PutObject", run_manifest_uri(runs, "run-1")),
        s3("s3:PutObject", join(runs, "run-1", "verification.json")),
        s3("s3:PutObject", join(runs, "tables", "runs", "run-1.json")),
        s3("s3:PutObject", join(runs, "_history", "0000000000001-run-1.json")),
        s3("s3:DeleteObject", maintenance_outcome_uri(runs, "run-1")),
        s3("s3:PutObject", join(f"s3://{stack.physical_name('BronzeBucket')}", "raw", "x.jsonl")),
        s3("s3:DeleteObject", join(f"s3://{stack.physical_name('BronzeBucket')}", "raw", "x.jsonl")),
        s3("s3:PutObject", f"s3://{stack.physical_name('BronzeBucket')}/raw_$folder$"),
        s3("s3:PutObject", join(artifacts, "checkpoints", "another-job_$folder$")),
        s3("s3:PutObject", join(artifacts, "runs_$folder$")),
        s3("s3:PutObject", step["--checkpoint"]),
        iam.Request("dynamodb:DeleteItem", stack.get_att("LeaseTable", "Arn")),
        *glue(stack, ("glue:DeleteTable", "glue:DeleteDatabase", "glue:UpdateDatabase"), database, "gold"),
        *tables_only(glue(stack, ("glue:UpdateTable", "glue:CreateTable"), database, "runs", "run_quarantine")),
        *tables_only(glue(stack, CATALOG_ACTIONS, "another_database", "gold")),
    ]
    allowed = [r for r in forbidden if stack.decide(role, r).allowed]
    assert allowed == []
    assert step["script"].startswith(f"{artifacts}/spark/")


def test_the_instance_role_reads_the_bootstrap_action_and_the_wheelhouse_it_installs(stack, role, runtime):
    """Each node runs the bootstrap action with the instance profile: it fetches the script, then
    lists and copies the wheelhouse (scripts/emr_bootstrap.sh), and may change neither."""
    if runtime == EMR_SERVERLESS:
        pytest.skip("EMR Serverless runs no bootstrap action (its job runs unpack the modules' archive)")
    substitutions = stack.definition_substitutions()
    script, wheels = substitutions["EmrBootstrapScriptUri"], substitutions["EmrWheelhouseUri"]
    reads = [s3("s3:GetObject", script), listing(wheels)]
    reads += [s3("s3:GetObject", join(wheels, name)) for name in ("requirements.txt", "boto3-1-py3-none-any.whl")]
    assert [r for r in reads if not stack.decide(role, r).allowed] == []
    writes = [s3("s3:PutObject", script), s3("s3:PutObject", join(wheels, "boto3-1-py3-none-any.whl"))]
    assert [r for r in writes if stack.decide(role, r).allowed] == []


def test_no_function_may_write_or_delete_the_jobs_code(stack, runtime):
    code = [f"arn:aws:s3:::{stack.physical_name('ArtifactsBucket')}/spark/{name}" for name in ("job.py", "maintain.py")]
    functions = [k for k, r in stack.resources.items() if r["Type"] == "AWS::Lambda::Function"]
    writers = [(f, a, c) for f in functions for a in ("s3:PutObject", "s3:DeleteObject") for c in code
               if stack.decide(f, iam.Request(a, c, {"aws:SecureTransport": "true"})).allowed]  # fmt: skip
    assert len(functions) == (8 if runtime == EMR_ON_EC2 else 7) and writers == []  # no cluster watchdog
