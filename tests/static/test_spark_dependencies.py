"""Every module the code shipped to EMR imports is there when it runs: in Python 3.9's standard
library, in PySpark or py4j (EMR provides them), in the shipped packages themselves, or pinned in
spark/requirements-emr.txt, which the cluster's bootstrap action installs from the artifacts
bucket with no package index.

The import closure is read from the zip `iotpipe.spark_package` builds (what `make deploy`
uploads) and the job scripts beside it, following imports within the shipped packages.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from iotpipe.local import iam
from iotpipe.run.plan import serverless_submit_parameters
from iotpipe.run.settings import Settings
from iotpipe.spark_package import build_zip
from tests.static.test_static_checks import python39

ROOT = Path(__file__).resolve().parent.parent.parent
REQUIREMENTS = ROOT / "spark" / "requirements-emr.txt"
PROVIDED_BY_EMR = {"pyspark", "py4j"}
# sys.stdlib_module_names is this interpreter's; EMR 7 runs Python 3.9, which lacks these.
NOT_IN_PYTHON_3_9 = {"tomllib", "_tomllib"}


def pinned_requirements() -> dict[str, str]:
    """Distribution name -> version, every line pinned with `==`."""
    lines = [line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line]
    unpinned = [str(r) for r in requirements if len(r.specifier) != 1 or next(iter(r.specifier)).operator != "=="]
    assert unpinned == [], "pin every EMR requirement with =="
    return {canonicalize_name(r.name): next(iter(r.specifier)).version for r in requirements}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict[str, str]:
    """Module name -> source of everything EMR runs: the zip on --py-files (the job scripts under
    spark/ included: spark-submit runs spark/job.py with it)."""
    archive = tmp_path_factory.mktemp("zip") / "iotpipe_spark.zip"
    build_zip(archive)
    with zipfile.ZipFile(archive) as opened:
        sources = {name: opened.read(name).decode() for name in opened.namelist() if name.endswith(".py")}
    return {
        name.removesuffix(".py").removesuffix("/__init__").replace("/", "."): text for name, text in sources.items()
    }


def imported_modules(module: str, source: str, is_package: bool) -> tuple[set[str], set[str]]:
    """(modules `source` imports, names that are modules if the shipped code has them): `import
    a.b` and the `a.b` of `from a.b import c` are the first, `a.b.c` the second (c may be a function)."""
    modules, maybe = set(), set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            modules.add(base)
            maybe |= {f"{base}.{alias.name}" for alias in node.names}
    return modules, maybe


def import_closure(shipped: dict[str, str]) -> tuple[set[str], set[str]]:
    """(top-level modules imported from outside the shipped packages, shipped-package modules the
    zip lacks), following imports from spark/ through every shipped module they reach."""
    top_levels = {name.split(".")[0] for name in shipped}
    outside, missing, seen = set(), set(), set()
    queue = [name for name in shipped if name.split(".")[0] == "spark"]
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        is_package = any(name.startswith(f"{module}.") for name in shipped)
        modules, maybe = imported_modules(module, shipped[module], is_package)
        for name in modules:
            if name.split(".")[0] not in top_levels:
                outside.add(name.split(".")[0])
            elif name in shipped:
                queue.append(name)
            else:
                missing.add(name)
        queue += [name for name in maybe if name in shipped]
    return outside, missing


def distribution_of(module: str) -> str:
    """The distribution that installs top-level `module` (python-dateutil for dateutil)."""
    return canonicalize_name(importlib.metadata.packages_distributions().get(module, [module])[0])


def test_everything_the_shipped_code_imports_is_on_the_cluster(shipped):
    assert "iotpipe.run.lease_store" in shipped and "spark.job" in shipped
    outside, missing = import_closure(shipped)
    assert missing == set(), "imported by the job but not in iotpipe_spark.zip"
    assert {"boto3", "botocore"} <= outside  # the lease, the ledger, S3 storage
    stdlib = set(sys.stdlib_module_names) - NOT_IN_PYTHON_3_9
    third_party = {m for m in outside if m not in stdlib and m not in PROVIDED_BY_EMR}
    installed = set(pinned_requirements())
    assert {m: distribution_of(m) for m in third_party if distribution_of(m) not in installed} == {}


def test_the_pinned_set_installs_on_python_3_9_from_the_wheelhouse_alone(tmp_path):
    """What the bootstrap action does, with EMR 7's Python: `make spark-wheels`, then pip with no
    index. A dependency missing from the pins (for Python 3.9's markers) fails the install. And
    what an EMR Serverless job run does: `make spark-deps-archive` (the same wheels, installed and
    archived), unpacked as ./deps and put on the PYTHONPATH as the job run's parameters say."""
    wheels, archive = tmp_path / "wheels", tmp_path / "deps.tar.gz"
    made = subprocess.run(["make", "--no-print-directory", "spark-deps-archive", f"SPARK_WHEELS={wheels}",
                           f"SPARK_DEPS_DIR={tmp_path / 'deps-build'}", f"SPARK_DEPS_ARCHIVE={archive}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)  # fmt: skip
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert (wheels / "requirements.txt").read_text() == REQUIREMENTS.read_text()
    versions = pinned_requirements()
    names = {canonicalize_name(re.split(r"-\d", p.name, maxsplit=1)[0]) for p in wheels.glob("*.whl")}
    assert names == set(versions)
    target = tmp_path / "site"
    install = [python39(), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
               "--target", str(target), "-r", str(wheels / "requirements.txt")]  # fmt: skip
    installed = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = "import boto3, botocore, json; print(json.dumps([boto3.__version__, botocore.__version__]))"
    ran = subprocess.run([python39(), "-c", probe], capture_output=True, text=True, env={"PYTHONPATH": str(target)})
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [versions["boto3"], versions["botocore"]]

    job_run = tmp_path / "job-run"
    with tarfile.open(archive) as opened:
        opened.extractall(job_run / "deps", filter="data")
    conf = serverless_conf(Settings(**SERVERLESS_SETTINGS))
    ran = subprocess.run([python39(), "-c", probe], capture_output=True, text=True, cwd=job_run,
                         env={"PYTHONPATH": conf["spark.emr-serverless.driverEnv.PYTHONPATH"]})  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == [versions["boto3"], versions["botocore"]]


SERVERLESS_SETTINGS = dict(
    bronze_uri="s3://b/raw", gold_uri="s3://g/iot_transformed", quarantine_uri="s3://g/quarantine",
    checkpoint_uri="s3://a/checkpoints/bronze-to-gold", runs_uri="s3://a/runs", spark_job_uri="s3://a/spark/job.py",
    spark_py_files_uri="s3://a/spark/iotpipe_spark.zip", spark_runtime="emr-serverless",
    spark_deps_archive_uri="s3://a/spark/iotpipe_spark_deps.tar.gz",
)  # fmt: skip


def serverless_conf(settings: Settings) -> dict[str, str]:
    """The `--conf` settings of a job run's SparkSubmitParameters, as EMR Serverless splits them."""
    tokens = serverless_submit_parameters(settings).split()
    assert tokens[::2] == ["--conf"] * (len(tokens) // 2)
    return dict(token.split("=", 1) for token in tokens[1::2])


def test_every_job_run_unpacks_the_dependency_archive_deploy_uploads():
    serverless = iam.load_stack(world=iam.local_world("emr-serverless"))
    artifacts = serverless.physical_name("ArtifactsBucket")
    environment = serverless.resolve(serverless.resources["PlanRunFunction"]["Properties"]["Environment"]["Variables"])
    settings = Settings.from_env({k: str(v) for k, v in environment.items()})
    assert settings.spark_runtime == "emr-serverless"
    conf = serverless_conf(settings)
    assert conf["spark.archives"] == f"s3://{artifacts}/spark/iotpipe_spark_deps.tar.gz#deps"
    assert conf["spark.submit.pyFiles"] == f"s3://{artifacts}/spark/iotpipe_spark.zip"
    assert conf["spark.emr-serverless.driverEnv.PYTHONPATH"] == conf["spark.executorEnv.PYTHONPATH"] == "./deps"
    assert conf["spark.jars"].endswith("iceberg-spark3-runtime.jar")  # Iceberg as EMR's image ships it
    deploy = (ROOT / "scripts" / "deploy.sh").read_text()
    uploaded = conf["spark.archives"].removesuffix("#deps").replace(artifacts, "${ARTIFACTS}")
    assert f'build/iotpipe_spark_deps.tar.gz "{uploaded}"' in deploy


def test_every_transient_cluster_runs_the_bootstrap_action_from_the_artifacts_bucket():
    stack = iam.load_stack()
    artifacts = stack.physical_name("ArtifactsBucket")
    substitutions = stack.definition_substitutions()
    definition = json.loads((ROOT / "statemachine" / "pipeline.asl.json").read_text())
    actions = definition["States"]["CreateCluster"]["Parameters"]["BootstrapActions"]
    assert [a["ScriptBootstrapAction"] for a in actions] == [
        {"Path": "${EmrBootstrapScriptUri}", "Args": ["${EmrWheelhouseUri}"]}
    ]
    script, wheels = substitutions["EmrBootstrapScriptUri"], substitutions["EmrWheelhouseUri"]
    assert script == f"s3://{artifacts}/spark/bootstrap/install-job-dependencies.sh"
    assert wheels == f"s3://{artifacts}/spark/wheels/"
    # PlanRun checks the same objects are there (its environment), and deploy.sh puts them there.
    environment = stack.resolve(stack.resources["PlanRunFunction"]["Properties"]["Environment"]["Variables"])
    assert (environment["SPARK_BOOTSTRAP_URI"], environment["SPARK_WHEELS_URI"]) == (script, wheels)
    deploy = (ROOT / "scripts" / "deploy.sh").read_text()
    assert "scripts/emr_bootstrap.sh" in deploy and script.replace(artifacts, "${ARTIFACTS}") in deploy
    assert f'build/spark-wheels "{wheels.replace(artifacts, "${ARTIFACTS}")}"' in deploy
    bootstrap = (ROOT / "scripts" / "emr_bootstrap.sh").read_text()
    assert re.search(r"pip install .*--no-index --find-links", bootstrap)
