"""`iotpipe watch` as a user sees it: the progress `iotpipe run` shows (states, batches), each run
on one line in words (no Python dict), and `--idle-exit S` ending S seconds after the command
started, however long the local engine takes to set up. The engine is a stand-in: no Spark."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from iotpipe import cli
from iotpipe.local import runner
from iotpipe.progress import RunProgress
from iotpipe.run.settings import Settings


@dataclass
class FakeExecution:
    report: dict
    status: str = "SUCCEEDED"
    failure: dict | None = None


def commit_every_bronze_object(bronze: Path, checkpoint: Path) -> None:
    """What the job leaves in its checkpoint after a batch took every Bronze object (its source log
    and its commit): `watch` counts a run's objects from it."""
    query = checkpoint / "transform"
    for folder in ("sources/0", "commits"):
        (query / folder).mkdir(parents=True, exist_ok=True)
    entries = [json.dumps({"path": f"file://{quote(str(p))}", "timestamp": 0, "batchId": 0}) for p in bronze.rglob("*")]
    (query / "sources" / "0" / "0").write_text("v1\n" + "\n".join(entries))
    (query / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')


class FakeEngine:
    """The LocalEngine's face to `watch`: its settings, `run`, and a slow set-up."""

    setup_seconds = 0.0
    made: list = []

    def __init__(self, lake, on_event=None, overrides=None, **_) -> None:
        self.settings = Settings.for_local_lake(str(Path(lake).resolve()))
        self.emit = on_event
        self.current = None
        FakeEngine.made.append(self)

    def __enter__(self):
        time.sleep(self.setup_seconds)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, execution_input, name):
        commit_every_bronze_object(Path(self.settings.bronze_uri), Path(self.settings.checkpoint_uri))
        self.emit("enter", {"state": "RunSparkStep"})
        self.emit("batch", {"batch": 0, "input": 10, "gold": 8, "quarantined": 1, "duplicates": 1, "ms": 900})
        self.emit("exit", {"state": "RunSparkStep"})
        records = {"input": 10, "gold": 8, "quarantined": 1, "duplicates": 1}
        return [FakeExecution({"run_id": name, "status": "SUCCEEDED", "records": records})]


@pytest.fixture
def engine(monkeypatch):
    FakeEngine.made, FakeEngine.setup_seconds = [], 0.0
    monkeypatch.setattr(runner, "LocalEngine", FakeEngine)
    return FakeEngine


def test_watch_shows_the_runs_progress_and_the_run_in_words(tmp_path, engine, capsys):
    raw = tmp_path / "bronze" / "raw"
    raw.mkdir(parents=True)
    (raw / "part-0.jsonl").write_text("{}\n")
    os.utime(raw / "part-0.jsonl", (time.time() - 60, time.time() - 60))
    code = cli.main(["watch", "--lake", str(tmp_path), "--delay", "0", "--interval", "0.1", "--max-runs", "1"])
    out = capsys.readouterr().out
    assert code == 0 and isinstance(engine.made[0].emit, RunProgress)
    assert "RunSparkStep" in out and "spark batch 0 committed: 10 lines -> gold 8, quarantined 1, duplicates 1" in out
    run_line = next(line for line in out.splitlines() if "SUCCEEDED" in line)
    assert run_line.endswith("SUCCEEDED in 0s, 1 new object: input 10 -> gold 8, quarantined 1, duplicates 1")
    assert "{" not in out and out.splitlines()[-1].startswith("1 run in ")


def test_idle_exit_counts_from_the_commands_start(tmp_path, engine, capsys):
    (tmp_path / "bronze" / "raw").mkdir(parents=True)
    engine.setup_seconds = 1.5
    started = time.monotonic()
    assert cli.main(["watch", "--lake", str(tmp_path), "--idle-exit", "2", "--interval", "0.1"]) == 0
    assert time.monotonic() - started < 2.8
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 runs in ")


def test_a_watched_runs_line_says_how_many_objects_it_did_not_read_and_why():
    from iotpipe.local.watch import WatchedRun

    run = WatchedRun(name="r", status="SUCCEEDED", objects=2, seconds=3.0, records={"input": 4, "gold": 4},
                     not_read={"count": 2, "by_reason": {"changed-after-read": 1, "other-format": 1}})  # fmt: skip
    assert cli.watched_run_line(run).endswith("; 2 not read (changed-after-read 1, other-format 1)")
