"""`iotpipe watch` after a crash and around runs that take less than expected: an object counts as
processed only once the batch that took it is committed; a run's count is the objects it read;
a run that leaves the same objects waiting is not started again for them. The engine is a
stand-in; the checkpoint is laid out as Spark writes it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

from iotpipe.lake.storage import LocalStorage
from iotpipe.local.runner import Execution
from iotpipe.local.watch import unprocessed_bronze, watch
from iotpipe.run.settings import Settings

SUCCEEDED = Execution("SUCCEEDED", None, None, None, [], None, 0.0)


def write_bronze(bronze: Path, name: str) -> Path:
    path = bronze / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"{}\n")
    os.utime(path, (time.time() - 60, time.time() - 60))
    return path


def plan_batch(checkpoint: Path, batch: int, files: list[Path]) -> None:
    """What the file source and the query write before a batch runs: its source log and offsets."""
    query = checkpoint / "transform"
    for folder in ("sources/0", "offsets"):
        (query / folder).mkdir(parents=True, exist_ok=True)
    entries = [json.dumps({"path": "file://" + quote(str(f)), "timestamp": 0, "batchId": batch}) for f in files]
    (query / "sources" / "0" / str(batch)).write_text("v1\n" + "\n".join(entries))
    (query / "offsets" / str(batch)).write_text(f'v1\n{{}}\n{{"logOffset":{batch}}}')


def commit_batch(checkpoint: Path, batch: int) -> None:
    commits = checkpoint / "transform" / "commits"
    commits.mkdir(parents=True, exist_ok=True)
    (commits / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def lake(tmp_path: Path) -> tuple[Settings, Path, Path]:
    settings = Settings.for_local_lake(str(tmp_path))
    bronze = Path(settings.bronze_uri)
    bronze.mkdir(parents=True)
    return settings, bronze, Path(settings.checkpoint_uri)


def test_objects_of_a_planned_but_uncommitted_batch_are_still_waiting(tmp_path):
    settings, bronze, checkpoint = lake(tmp_path)
    done, interrupted = write_bronze(bronze, "done.jsonl"), write_bronze(bronze, "interrupted.jsonl")
    plan_batch(checkpoint, 0, [done])
    commit_batch(checkpoint, 0)
    plan_batch(checkpoint, 1, [interrupted])

    waiting = unprocessed_bronze(LocalStorage(), settings.bronze_uri, settings.checkpoint_uri)

    assert waiting == {str(interrupted)}


def test_a_restarted_watch_starts_a_run_for_a_batch_a_killed_one_left_uncommitted(tmp_path):
    settings, bronze, checkpoint = lake(tmp_path)
    plan_batch(checkpoint, 0, [write_bronze(bronze, "part-0.jsonl")])
    started = []

    def run(execution_input, name):
        started.append(name)
        commit_batch(checkpoint, 0)
        yield SUCCEEDED

    summary = watch(SimpleNamespace(settings=settings, run=run), interval=0.01, delay=0, idle_exit=0.3)

    assert len(started) == 1 and [r.objects for r in summary.runs] == [1]


def test_a_run_counts_the_objects_it_read_including_those_that_arrived_after_the_poll(tmp_path):
    settings, bronze, checkpoint = lake(tmp_path)
    seen_by_the_poll = write_bronze(bronze, "part-0.jsonl")

    def run(execution_input, name):
        arrived_since = [write_bronze(bronze, f"late-{i}.jsonl") for i in range(7)]
        plan_batch(checkpoint, 0, [seen_by_the_poll, *arrived_since])
        commit_batch(checkpoint, 0)
        yield SUCCEEDED

    summary = watch(SimpleNamespace(settings=settings, run=run), interval=0.01, delay=0, max_runs=1)

    assert [r.objects for r in summary.runs] == [8]


def test_a_run_that_reads_none_of_the_waiting_objects_is_not_started_again_for_them(tmp_path):
    """A lake path Spark cannot read, say: the run succeeds with input 0 and the objects stay
    waiting. As for a failed run, the next run waits for new objects."""
    settings, bronze, _ = lake(tmp_path)
    write_bronze(bronze, "part-0.jsonl")
    started = []

    def run(execution_input, name):
        started.append(name)
        yield SUCCEEDED

    summary = watch(SimpleNamespace(settings=settings, run=run), interval=0.01, delay=0, idle_exit=0.3, max_runs=3)

    assert len(started) == 1 and [r.objects for r in summary.runs] == [0]
