"""The Spark job runs on EMR with the instance role; Hadoop's S3 client cannot be intercepted
locally, so what the job touches is derived from a real plan's step arguments (with the
deployed environment of the template) and evaluated against `EmrInstanceRole`."""

from __future__ import annotations

import pytest

from iotpipe.local import iam
from iotpipe.planning import compaction_step_args, spark_attempt
from iotpipe.settings import Settings
from iotpipe.storage import join, split_s3

ROLE = "EmrInstanceRole"


@pytest.fixture(scope="module")
def stack():
    return iam.load_stack()


@pytest.fixture(scope="module")
def step(stack) -> dict:
    """The job's arguments as PlanRun plans them on AWS (settings from a function's environment)."""
    environment = stack.resolve(stack.resources["PlanRunFunction"]["Properties"]["Environment"]["Variables"])
    settings = Settings.from_env({k: str(v) for k, v in environment.items()})
    args = spark_attempt("run-1", 1, settings, None, {}).step_args
    script = next(i for i, a in enumerate(args) if a.endswith("job.py"))
    options = dict(zip(args[script + 1 :: 2], args[script + 2 :: 2]))
    return {"script": args[script], "py_files": args[args.index("--py-files") + 1], **options}


def s3(action: str, uri: str) -> iam.Request:
    bucket, key = split_s3(uri)
    return iam.Request(action, f"arn:aws:s3:::{bucket}/{key}", {"aws:SecureTransport": "true"})


def listing(uri: str) -> iam.Request:
    bucket, key = split_s3(uri)
    return iam.Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"aws:SecureTransport": "true", "s3:prefix": key})


def what_the_job_does(step: dict, stack) -> list[iam.Request]:
    gold, quarantine, checkpoint = step["--gold"], step["--quarantine"], step["--checkpoint"]
    partition = "date=2024-01-01/location_city=Oslo/part-00000.parquet"
    found = [listing(step["--bronze"]), s3("s3:GetObject", join(step["--bronze"], "seed-1/part-00001.jsonl")),
             s3("s3:GetObject", step["script"]), s3("s3:GetObject", step["py_files"])]  # fmt: skip
    for sink in (gold, quarantine):
        found.append(listing(sink + "/"))
        for key in (partition, "_spark_metadata/0", "_spark_metadata/9.compact"):
            found += [s3(a, join(sink, key)) for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")]
    found.append(listing(checkpoint + "/"))
    keys = ("transform/offsets/0", "transform/commits/0", "transform/sources/0/0", "ledger/gold/0.json", "seen-ids/x")
    keys += ("gold/sources/0/9.compact", "ignored/gold-0.json")  # a batch's objects, the note of unreadable ones
    for key in keys:
        found += [s3(a, join(checkpoint, key)) for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")]
    table = step["--lease"].removeprefix("dynamodb://").split("?", 1)[0]
    assert table == stack.physical_name("LeaseTable")
    found.append(iam.Request("dynamodb:UpdateItem", stack.get_att("LeaseTable", "Arn")))
    return found + emrfs_folder_keys(step)


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


def test_the_instance_role_allows_everything_the_compaction_step_does(stack):
    """spark/compact.py, with the arguments PlanRun gives its EMR step: it reads the sink log and
    the checkpoint, writes merged files through a staging folder, rewrites the newest compact log
    file, keeps its journal and its summary, and claims the lease as a driver."""
    environment = stack.resolve(stack.resources["PlanRunFunction"]["Properties"]["Environment"]["Variables"])
    settings = Settings.from_env({k: str(v) for k, v in environment.items()})
    args = compaction_step_args("run-1", settings)
    script = next(i for i, a in enumerate(args) if a.endswith("compact.py"))
    step = dict(zip(args[script + 1 :: 2], args[script + 2 :: 2]))
    gold, checkpoint = step["--gold"], step["--checkpoint"]
    partition = "date=2024-01-01/location_city=St. John%27s"
    found = [s3("s3:GetObject", args[script]), s3("s3:GetObject", args[args.index("--py-files") + 1])]
    found += [listing(gold + "/"), listing(join(gold, "_spark_metadata") + "/"), listing(checkpoint + "/")]
    keys = (f"{partition}/part-00000.parquet", f"{partition}/part-compacted-9-x.c000.snappy.parquet",
            "_compaction/staging/x/date=2024-01-01/part-0.parquet", "_compaction/journal/9.json",
            "_spark_metadata/9.compact")  # fmt: skip
    for key in keys:
        found += [s3(a, join(gold, key)) for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")]
    found += [s3("s3:GetObject", join(checkpoint, "transform", "commits", "9"))]
    found += [s3(a, join(checkpoint, "compactions", "run-1.json")) for a in ("s3:PutObject", "s3:GetObject")]
    assert step["--lease"].removeprefix("dynamodb://").split("?", 1)[0] == stack.physical_name("LeaseTable")
    found.append(iam.Request("dynamodb:UpdateItem", stack.get_att("LeaseTable", "Arn")))
    denied = [r for r in found if not stack.decide(ROLE, r).allowed]
    assert denied == []


def test_the_instance_role_allows_everything_the_spark_job_does(step, stack):
    denied = [r for r in what_the_job_does(step, stack) if not stack.decide(ROLE, r).allowed]
    assert denied == []


def test_the_instance_role_cannot_change_the_jobs_code_or_other_checkpoints(step, stack):
    artifacts = f"s3://{stack.physical_name('ArtifactsBucket')}"
    forbidden = [
        s3("s3:PutObject", step["script"]),
        s3("s3:PutObject", step["py_files"]),
        s3("s3:DeleteObject", step["script"]),
        s3("s3:DeleteObject", join(artifacts, "checkpoints", "another-job", "offsets", "0")),
        s3("s3:PutObject", join(artifacts, "runs", "run-1.json")),
        s3("s3:PutObject", join(f"s3://{stack.physical_name('BronzeBucket')}", "raw", "x.jsonl")),
        s3("s3:PutObject", f"s3://{stack.physical_name('BronzeBucket')}/raw_$folder$"),
        s3("s3:PutObject", join(artifacts, "checkpoints", "another-job_$folder$")),
        s3("s3:PutObject", join(artifacts, "runs_$folder$")),
        s3("s3:PutObject", step["--checkpoint"]),
        iam.Request("dynamodb:DeleteItem", stack.get_att("LeaseTable", "Arn")),
    ]
    allowed = [r for r in forbidden if stack.decide(ROLE, r).allowed]
    assert allowed == []
    assert step["script"].startswith(f"{artifacts}/spark/")


def test_the_instance_role_reads_the_bootstrap_action_and_the_wheelhouse_it_installs(stack):
    """Each node runs the bootstrap action with the instance profile: it fetches the script, then
    lists and copies the wheelhouse (scripts/emr_bootstrap.sh), and may change neither."""
    substitutions = stack.definition_substitutions()
    script, wheels = substitutions["EmrBootstrapScriptUri"], substitutions["EmrWheelhouseUri"]
    reads = [s3("s3:GetObject", script), listing(wheels)]
    reads += [s3("s3:GetObject", join(wheels, name)) for name in ("requirements.txt", "boto3-1-py3-none-any.whl")]
    assert [r for r in reads if not stack.decide(ROLE, r).allowed] == []
    writes = [s3("s3:PutObject", script), s3("s3:PutObject", join(wheels, "boto3-1-py3-none-any.whl"))]
    assert [r for r in writes if stack.decide(ROLE, r).allowed] == []


def test_no_function_may_write_or_delete_the_jobs_code(stack):
    code = f"arn:aws:s3:::{stack.physical_name('ArtifactsBucket')}/spark/job.py"
    functions = [k for k, r in stack.resources.items() if r["Type"] == "AWS::Lambda::Function"]
    writers = [(f, a) for f in functions for a in ("s3:PutObject", "s3:DeleteObject")
               if stack.decide(f, iam.Request(a, code, {"aws:SecureTransport": "true"})).allowed]  # fmt: skip
    assert len(functions) == 9 and writers == []
