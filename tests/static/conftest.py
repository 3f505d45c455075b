"""One `sam build` for the static tests that read what it built (the functions and the layer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.static.test_static_checks import run, sam


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory) -> Path:
    """The build folder of `sam build` over the whole template, as `make sam-build` runs it."""
    root = tmp_path_factory.mktemp("sam")
    result = run([sam(), "build", "--build-dir", str(root / "build"), "--cache-dir", str(root / "cache")], timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root / "build"
