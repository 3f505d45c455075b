"""iotpipe.sink_log must see the files Spark's own reader of a file sink sees (the verification,
the ledger and the seen-id store count rows from it): the same log, read both ways, on logs
that hold what Spark never writes itself but a hand or another tool might."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from iotpipe.sink_log import BatchFiles, committed_files, files_as_of
from iotpipe.storage import LocalStorage

pytestmark = pytest.mark.spark


def data_files(spark, sink: Path, names: list[str]) -> dict[str, Path]:
    files = {}
    for name in names:
        folder = sink / "date=2026-11-27" / "location_city=oslo" / f"tmp-{name}"
        spark.createDataFrame([(name,)], "event_id string").coalesce(1).write.parquet(str(folder))
        (written,) = folder.glob("*.parquet")
        files[name] = written.rename(folder.parent / f"{name}.parquet")
    return files


def log(sink: Path, name: str, entries: list[dict]) -> None:
    (sink / "_spark_metadata").mkdir(exist_ok=True)
    (sink / "_spark_metadata" / name).write_text("v1\n" + "\n".join(json.dumps(e) for e in entries) + "\n")


def entry(path: Path, action: str = "add", is_dir: bool = False) -> dict:
    size = 0 if is_dir else path.stat().st_size
    return {"path": path.as_uri(), "size": size, "isDir": is_dir, "modificationTime": 0,
            "blockReplication": 1, "blockSize": 1, "action": action}  # fmt: skip


def local_path(uri: str) -> str:
    return unquote(urlparse(uri).path) if uri.startswith("file:") else uri


@pytest.mark.parametrize(
    "log_files",
    [("0", "1"), ("0", "1.compact"), ("0", "1.compact", "2")],
    ids=["deltas", "delta then compact", "compact then delta"],
)
def test_the_sink_log_is_read_as_spark_reads_it(spark, tmp_path, log_files):
    # A reader with Spark's default configuration (the job's compactInterval 1 would make a reader
    # of a log with no compact file look for one; the shared session may hold it from a job test).
    interval = "spark.sql.streaming.fileSink.log.compactInterval"
    previous = spark.conf.get(interval, None)
    spark.conf.unset(interval)
    try:
        check_parity(spark, tmp_path, log_files)
    finally:
        if previous is not None:
            spark.conf.set(interval, previous)


def check_parity(spark, tmp_path, log_files) -> None:
    sink = tmp_path / "gold"
    files = data_files(spark, sink, ["a", "b", "c", "d"])
    batches = [
        [entry(files["a"]), entry(files["b"])],
        # Spark 3.5 and 4 have no "delete" action any more: an entry is a file, whatever its action.
        [entry(files["a"], action="delete"), entry(files["c"]), entry(files["c"].parent, is_dir=True)],
        [entry(files["d"]), entry(files["b"])],
    ]
    so_far: list = []
    for name, entries in zip(log_files, batches):
        so_far += entries
        log(sink, name, so_far if name.endswith(".compact") else entries)
    frame = spark.read.parquet(str(sink))
    spark_reads = {local_path(uri) for uri in frame.inputFiles()}
    assert spark_reads >= {str(files[n]) for n in ("a", "b", "c")}
    storage = LocalStorage()
    committed = committed_files(storage, str(sink))
    assert {f.uri for f in committed} == spark_reads
    # One row per file: Spark reads a path logged twice twice, and a folder entry as nothing.
    assert len(committed) == frame.count()
    last = len(log_files) - 1
    assert {local_path(p) for p in files_as_of(storage, str(sink), last)} == spark_reads
    per_batch = BatchFiles(storage, str(sink))
    assert {local_path(p) for b in range(last + 1) for p, _ in per_batch.files(b)} == spark_reads
