"""`iotpipe watch` decides what is unprocessed the way Spark does: source-log paths are URL-encoded."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from iotpipe.lake.storage import LocalStorage
from iotpipe.local.watch import bronze_objects, unprocessed_bronze

KEYS = ("with space.jsonl", "per%cent.jsonl", "plus+sign.jsonl", "ünïcode-城市.jsonl", "a.jsonl.gz")


def source_log(checkpoint: Path, files: list[Path]) -> None:
    """Batch 0 of the query took `files` and is committed, as Spark writes it."""
    log = checkpoint / "transform" / "sources" / "0" / "0"
    log.parent.mkdir(parents=True)
    entries = [json.dumps({"path": "file://" + quote(str(f)), "timestamp": 0, "batchId": 0}) for f in files]
    log.write_text("v1\n" + "\n".join(entries))
    (checkpoint / "transform" / "commits").mkdir()
    (checkpoint / "transform" / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_objects_spark_logged_url_encoded_count_as_processed(tmp_path):
    bronze, checkpoint = tmp_path / "bronze", tmp_path / "checkpoint"
    bronze.mkdir()
    files = [bronze / key for key in KEYS]
    for f in files:
        f.write_bytes(b"{}\n")
    source_log(checkpoint, files)
    (bronze / "late.jsonl").write_bytes(b"{}\n")
    assert unprocessed_bronze(LocalStorage(), str(bronze), str(checkpoint)) == {str(bronze / "late.jsonl")}


def test_objects_the_job_does_not_read_are_ignored_not_waiting(tmp_path):
    for name in ("notes.txt", ".hidden.jsonl", "_manifests/seed-1/shard-0.json", ".x.jsonl.inprogress", "ok.JSON"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    readable, ignored = bronze_objects(LocalStorage(), str(tmp_path))
    assert readable == {str(tmp_path / "ok.JSON")}
    assert ignored == {str(tmp_path / "notes.txt"): "other-format", str(tmp_path / ".hidden.jsonl"): "hidden"}


def test_a_failed_run_is_reported_and_not_retried_until_new_objects_arrive(tmp_path):
    """As the S3 trigger starts a run per upload: a run refused on some objects (a checkpoint
    the job cannot continue) is not started again each poll, and its reason reaches the user."""
    from types import SimpleNamespace

    from iotpipe.local.runner import Execution
    from iotpipe.local.watch import watch
    from iotpipe.run.settings import Settings

    settings = Settings.for_local_lake(str(tmp_path))
    bronze = Path(settings.bronze_uri)
    bronze.mkdir(parents=True)
    (bronze / "first.jsonl").write_bytes(b"{}\n")
    started = []

    def run(execution_input, name):
        started.append(name)
        if len(started) == 1:
            (bronze / "second.jsonl").write_bytes(b"{}\n")
        yield Execution("FAILED", None, "CheckpointLayoutUnsupported", "refused", [], None, 0.0)

    engine = SimpleNamespace(settings=settings, run=run)
    summary = watch(engine, interval=0.01, delay=0, idle_exit=0.5, max_runs=3)
    assert len(started) == 2
    assert [r.error for r in summary.runs] == [{"Error": "CheckpointLayoutUnsupported", "Cause": "refused"}] * 2
