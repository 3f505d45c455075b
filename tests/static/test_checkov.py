"""The template passes checkov's CloudFormation checks; each suppression says why in the template.

A suppression is a `Metadata: checkov: skip:` entry on the resource (`id` and `comment`), so the
reason sits beside what it excuses and a reviewer reads both together.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
MIN_REASON_WORDS = 5


def checkov() -> str:
    path = os.environ.get("IOTPIPE_CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(path).exists():
        pytest.fail("checkov not found: run the tests through `make test`, which installs it")
    return path


@pytest.fixture(scope="module")
def report() -> dict:
    command = [checkov(), "--file", "template.yaml", "--framework", "cloudformation", "--output", "json"]
    # --skip-download: no call home for guidelines; the checks ship with the package.
    result = subprocess.run([*command, "--skip-download"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    parsed = json.loads(result.stdout)
    return parsed[0] if isinstance(parsed, list) else parsed


def test_checkov_parses_the_whole_template(report):
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 0 and report["summary"]["passed"] > 0


def test_no_check_fails_unless_the_template_suppresses_it(report):
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"].get("failed_checks", [])]
    assert failed == [], "fix these, or add `Metadata: checkov: skip:` with a reason:\n" + "\n".join(failed)


def test_every_suppression_gives_a_reason(report):
    skipped = report["results"].get("skipped_checks", [])
    assert len(skipped) == report["summary"]["skipped"]
    unexplained = [
        f"{c['check_id']} {c['resource']}"
        for c in skipped
        if len((c["check_result"].get("suppress_comment") or "").split()) < MIN_REASON_WORDS
    ]
    assert unexplained == []
