"""`iotpipe watch` decides what is unprocessed the way Spark does: source-log paths are URL-encoded."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from iotpipe.local.watch import bronze_objects, unprocessed_bronze
from iotpipe.storage import LocalStorage

KEYS = ("with space.jsonl", "per%cent.jsonl", "plus+sign.jsonl", "ünïcode-城市.jsonl", "a.jsonl.gz")


def source_log(checkpoint: Path, files: list[Path]) -> None:
    log = checkpoint / "transform" / "sources" / "0" / "0"
    log.parent.mkdir(parents=True)
    entries = [json.dumps({"path": "file://" + quote(str(f)), "timestamp": 0, "batchId": 0}) for f in files]
    log.write_text("v1\n" + "\n".join(entries))


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
