"""iotpipe.sink_log must see the files Spark's own reader of a file sink sees (the verification,
the ledger and the seen-id store count rows from it): the same log, read both ways, on logs
that hold what Spark never writes itself but a hand or another tool might."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotpipe.sink_log import committed_files, files_as_of
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


def names_spark_reads(spark, sink: Path) -> set[str]:
    return {Path(uri).name for uri in spark.read.parquet(str(sink)).inputFiles()}


@pytest.mark.parametrize("compacted", [False, True], ids=["deltas", "compact then delta"])
def test_the_sink_log_is_read_as_spark_reads_it(spark, tmp_path, compacted):
    sink = tmp_path / "gold"
    files = data_files(spark, sink, ["a", "b", "c"])
    first = [entry(files["a"]), entry(files["b"])]
    # Spark 3.5 and 4 have no "delete" action any more: an entry is a file, whatever its action.
    second = [entry(files["a"], action="delete"), entry(files["c"]), entry(files["c"].parent, is_dir=True)]
    if compacted:
        log(sink, "0", first)
        log(sink, "1.compact", first + second)
    else:
        log(sink, "0", first)
        log(sink, "1", second)
    spark_sees = names_spark_reads(spark, sink)
    assert spark_sees == {"a.parquet", "b.parquet", "c.parquet"}
    storage = LocalStorage()
    assert {Path(f.uri).name for f in committed_files(storage, str(sink))} == spark_sees
    assert {Path(p).name for p in files_as_of(storage, str(sink), 1)} == spark_sees
