"""Ctrl-C ends a local run cleanly: a real `iotpipe run` gets SIGINT while its Spark job runs; it
exits at once with one line and no traceback, leaves no Spark process behind, gives up the lease
so that the next run on the lake starts at once (no WaitForLease) and succeeds, and the run is in
the history as INTERRUPTED."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--size", "2MiB", "--shards", "1", "--days", "1"]

pytestmark = pytest.mark.spark


def iotpipe(*args: str, **options) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "iotpipe.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)  # fmt: skip


def processes_using(path: Path) -> list[str]:
    """Command lines of the processes that name `path` (the lake): a Spark job left behind would."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in command:
                found.append(command[:200])
    return found


def test_ctrl_c_during_spark_ends_the_run_cleanly_and_the_next_run_starts_at_once(tmp_path):
    lake = tmp_path / "lake"
    run = iotpipe("run", "--lake", str(lake), "--name", "run-interrupted", *SMALL)
    seen = []
    for line in run.stdout:  # until the Spark job runs
        seen.append(line)
        if "spark step" in line and "started" in line:
            break
    assert any("RunSparkStep" in line for line in seen), "".join(seen)
    time.sleep(8)  # the job is well into its JVM and its first batch

    run.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = run.communicate(timeout=90)
    stopped_in = time.monotonic() - started

    assert run.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("iotpipe run: interrupted (SIGINT) during RunSparkStep: processes stopped, lease released")
    assert "run run-interrupted recorded as INTERRUPTED" in err
    assert stopped_in < 45, stopped_in
    assert processes_using(lake) == []

    next_run = iotpipe("run", "--lake", str(lake), "--name", "run-next", *SMALL)
    out, err = next_run.communicate(timeout=600)
    assert next_run.returncode == 0, out[-3000:] + err[-3000:]
    assert "WaitForLease" not in out and "AcquireLease" in out
    assert re.search(r"^status +SUCCEEDED$", out, re.MULTILINE), out[-3000:]

    history = iotpipe("report", "--lake", str(lake), "--json")
    runs = {r["run_id"]: r for r in json.loads(history.communicate(timeout=60)[0])}
    assert runs["run-interrupted"]["status"] == "INTERRUPTED" and runs["run-next"]["status"] == "SUCCEEDED"
    assert (lake / "artifacts" / "runs" / "run-interrupted.html").is_file()
