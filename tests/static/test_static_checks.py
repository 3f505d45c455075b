"""Static checks of what is deployed: the definition, the template, the build, Python 3.9 syntax."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iotpipe.spark_package import shipped_files

ROOT = Path(__file__).resolve().parent.parent.parent


def sam() -> str:
    path = os.environ.get("IOTPIPE_SAM") or shutil.which("sam") or str(ROOT / ".venv-sam" / "bin" / "sam")
    if not Path(path).exists():
        pytest.fail("SAM CLI not found: run the tests through `make test`, which installs it")
    return path


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, **kwargs)


def test_the_definition_passes_statelint():
    result = run([str(Path(sys.executable).parent / "statelint"), "statemachine/pipeline.asl.json"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_template_passes_sam_validate_lint():
    result = run([sam(), "validate", "--lint"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build_succeeds_with_the_shared_layer(sam_build):
    layer = sam_build / "SharedLayer" / "python"
    assert (layer / "iotpipe" / "run" / "verify.py").exists() and (layer / "aws_lambda_powertools").is_dir()
    assert (layer / "fastavro").is_dir() and not (layer / "pyarrow").exists(), "the layer reads Avro, not Parquet"
    assert (sam_build / "PlanRunFunction" / "app.py").exists()


def python39() -> str:
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9"))) + [
        shutil.which("python3.9") or ""
    ]
    found = [c for c in candidates if c and Path(c).exists()]
    if not found:
        pytest.fail("Python 3.9 (EMR 7's interpreter) not found to check the Spark job's syntax")
    return found[0]


def test_the_spark_job_is_valid_python_3_9():
    """The job and every module it ships with it to EMR (iotpipe.spark_package follows its imports)."""
    sources = [str(p) for p in shipped_files()]
    assert str(ROOT / "spark" / "job.py") in sources and str(ROOT / "iotpipe" / "run" / "lease_store.py") in sources
    code = "import ast, sys\nfor path in sys.argv[1:]:\n    ast.parse(open(path).read(), path)\n"
    result = run([python39(), "-c", code, *sources])
    assert result.returncode == 0, result.stderr
