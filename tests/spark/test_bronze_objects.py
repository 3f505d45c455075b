"""Which Bronze objects the real job reads, compared with the shared rule in `iotpipe.lake.bronze`,
objects the file source would skip on its own (old modification times), objects it cannot tell
from their name (gzip content without a suffix, a rewrite under the same key), a lake path with
glob characters, and a batch a crash left uncommitted as `watch` sees it."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from iotpipe.lake.bronze import ignored_reason
from iotpipe.lake.storage import LocalStorage
from spark import job
from tests.spark.test_streaming_job import job_argv, table_of

pytestmark = pytest.mark.spark

AWKWARD_KEYS = [
    "a.jsonl",
    "b.JSONL",
    "c.Json",
    "d.ndjson",
    "e.jsonl.gz",
    "f.JSONL.gz",
    "firehose-1-2026-11-27-10-00-00-0b1e.gz",
    "firehose-1-2026-11-27-10-00-00-0b1e4c2a-9f3d-4e57-8a61-2c9d7f0e5b13",
    "firehose.v2-1-2026-11-27-10-00-00-0b1e",
    "g.NDJSON.gz",
    "h.GZ",
    "i.jsonl.GZ",
    "j.json.Gz",
    "k.txt",
    "l.csv",
    "noext",
    "trailing-dot.",
    "long-s.jſonl",
    "m.jsonl.tmp",
    "n.jsonl._COPYING_",
    "_o.jsonl",
    ".p.jsonl",
    "_q=1.jsonl",
    "_r=2/s.jsonl",
    "_hidden/t.jsonl",
    ".git/u.jsonl",
    "sub dir/with space.jsonl",
    "pct%2B+plus.jsonl",
    "per%25cent%.jsonl",
    "a+b c%20d.jsonl",
    "ünïcödé/Zürich.jsonl",
    "deep/er/still/v.JSON",
    "dir.jsonl/w.jsonl",
]


def event_line(event_id: str) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "device_id": "dev-000001",
            "event_time": "2026-11-20T10:00:00Z",
            "location": {"city": "Berlin", "country": "DE", "lat": 52.5, "lon": 13.4},
            "temperature_c": 20.0,
            "humidity_pct": 50.0,
            "battery_pct": 90,
            "firmware": "1.4.2",
        },
        ensure_ascii=False,
    )


def write_object(bronze: Path, key: str, lines: list[str], mtime: float = 1_700_000_000) -> None:
    """Write an object the way a producer would: gzip-compressed when its name ends in .gz (any case)."""
    path = bronze / key
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if key.lower().endswith(".gz") else data)
    os.utime(path, (mtime, mtime))


def run_job(spark, lake: Path) -> dict:
    return job.run(spark, job.build_parser().parse_args(job_argv(lake, max_files_per_trigger=64)))


def local_path(uri: str) -> str:
    """The path of a `file:` URI taken as it is: `source_file` must hold the object's real path."""
    assert uri.startswith("file:"), uri
    return "/" + uri[len("file:") :].lstrip("/")


def keys_read(spark, lake: Path) -> dict[str, set]:
    """Bronze keys (relative, as stored in `source_file`) of every row in Gold or the quarantine, with the event ids
    read from each (an object read as garbage shows up with a null id)."""
    bronze = (lake / "bronze").resolve()
    read: dict[str, set] = {}
    for table in ("gold", "quarantine"):
        for row in spark.table(table_of(lake, table)).select("source_file", "event_id").collect():
            path = Path(local_path(row.source_file))
            read.setdefault(str(path.relative_to(bronze)), set()).add(row.event_id)
    return read


def test_the_job_reads_exactly_the_objects_the_shared_rule_calls_readable(spark, tmp_path):
    for key in AWKWARD_KEYS:
        write_object(tmp_path / "bronze", key, [event_line(key)])
    summary = run_job(spark, tmp_path)
    expected = {key for key in AWKWARD_KEYS if ignored_reason(key) is None}
    read = keys_read(spark, tmp_path)
    assert read == {key: {key} for key in expected}
    assert summary["quarantined_rows"] == 0 and summary["input_rows"] == len(expected)


def test_an_object_thirty_days_older_than_the_others_is_still_read(spark, tmp_path):
    now = 1_780_000_000
    write_object(tmp_path / "bronze", "new-1.jsonl", [event_line("new-1")], mtime=now)
    run_job(spark, tmp_path)
    write_object(tmp_path / "bronze", "backfill.jsonl", [event_line("backfill")], mtime=now - 30 * 86_400)
    write_object(tmp_path / "bronze", "new-2.jsonl", [event_line("new-2")], mtime=now + 60)
    second = run_job(spark, tmp_path)
    assert second["input_rows"] == 2
    assert set(keys_read(spark, tmp_path)) == {"new-1.jsonl", "new-2.jsonl", "backfill.jsonl"}


def test_an_object_the_job_cannot_read_never_fails_a_run_and_is_reported_by_name(spark, tmp_path):
    """A gzip object cut short (an interrupted upload) and a name Hadoop cannot open (a `:` makes
    the local checksum file system fail) used to fail every batch of every later run. Objects the
    job does not read at all (hidden, other formats) are reported too, once, whatever started the run."""
    from iotpipe.run.report import collect_ignored

    bronze = tmp_path / "bronze"
    write_object(bronze, "good.jsonl", [event_line("good")])
    write_object(bronze, "colon:name.jsonl", [event_line("colon")])
    whole = gzip.compress(("\n".join(event_line(f"gz-{i}") for i in range(2000)) + "\n").encode())
    (bronze / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    write_object(bronze, ".hidden.jsonl", [event_line("hidden")])  # not read, by the shared rule
    (bronze / "notes.csv").write_text("a,b\n")
    write_object(bronze, "_manifests/seed-1/shard-0.json", ["{}"])  # the generator's own: not reported

    first = run_job(spark, tmp_path)
    second = run_job(spark, tmp_path)

    read = keys_read(spark, tmp_path)
    assert read["good.jsonl"] == {"good"} and "colon:name.jsonl" not in read
    assert 0 < len(read["truncated.jsonl.gz"] - {None}) < 2000  # its readable part went through
    assert first["input_rows"] > 0 and second["input_rows"] == 0
    runs = tmp_path / "runs"
    ignored = collect_ignored(LocalStorage(), str(runs), "run-1", str(tmp_path / "checkpoint"))
    assert ignored["count"] == 4
    assert ignored["by_reason"] == {"corrupt-gzip": 1, "hidden": 1, "other-format": 1, "unreadable": 1}
    assert sorted(Path(e).name for e in ignored["examples"]) == [
        ".hidden.jsonl", "colon:name.jsonl", "notes.csv", "truncated.jsonl.gz"]  # fmt: skip
    assert collect_ignored(LocalStorage(), str(runs), "run-2", str(tmp_path / "checkpoint")) == {}


def test_a_firehose_object_without_a_suffix_is_read_as_json_lines(spark, tmp_path):
    name = "2026/11/27/10/stream-1-2026-11-27-10-00-00-0b1e4c2a-9f3d-4e57-8a61-2c9d7f0e5b13"
    write_object(tmp_path / "bronze", name, [event_line("a"), event_line("b")])
    summary = run_job(spark, tmp_path)
    assert summary["input_rows"] == 2 and keys_read(spark, tmp_path) == {name: {"a", "b"}}


def test_an_object_without_a_suffix_whose_content_is_gzip_is_reported_by_name(spark, tmp_path):
    """Hadoop picks a codec by suffix only: such an object is read as text, its lines quarantined
    as malformed, and the run report names it with its reason."""
    from iotpipe.run.report import collect_ignored

    bronze = tmp_path / "bronze"
    (bronze / "stream-1-2026-11-27-10-00-00-0b1e").parent.mkdir(parents=True)
    (bronze / "stream-1-2026-11-27-10-00-00-0b1e").write_bytes(gzip.compress((event_line("gz") + "\n").encode()))
    write_object(bronze, "plain-1-2026-11-27-10-00-00-0b1e", [event_line("plain")])
    run_job(spark, tmp_path)
    ignored = collect_ignored(LocalStorage(), str(tmp_path / "runs"), "run-1", str(tmp_path / "checkpoint"))
    assert ignored["by_reason"] == {"gzip-without-suffix": 1}
    assert [Path(e).name for e in ignored["examples"]] == ["stream-1-2026-11-27-10-00-00-0b1e"]


def test_a_lake_under_a_folder_with_glob_characters_is_read(spark, tmp_path):
    lake = tmp_path / "lake [1] {a,b} *?"
    write_object(lake / "bronze", "part-0.jsonl", [event_line("in-a-glob")])
    summary = run_job(spark, lake)
    assert summary["input_rows"] == 1 and keys_read(spark, lake) == {"part-0.jsonl": {"in-a-glob"}}


def test_an_object_rewritten_after_the_job_read_it_is_reported_once_as_changed(spark, tmp_path):
    """Spark's file source remembers paths: the new version is not read. The run report says so."""
    from iotpipe.run.report import collect_ignored

    bronze, checkpoint, runs = tmp_path / "bronze", str(tmp_path / "checkpoint"), str(tmp_path / "runs")
    write_object(bronze, "kept.jsonl", [event_line("kept")])
    write_object(bronze, "rewritten.jsonl", [event_line("first")])
    run_job(spark, tmp_path)
    write_object(bronze, "rewritten.jsonl", [event_line("first"), event_line("second")], mtime=1_700_000_600)
    second = run_job(spark, tmp_path)
    third = run_job(spark, tmp_path)

    assert second["input_rows"] == 0 and third["input_rows"] == 0
    assert collect_ignored(LocalStorage(), runs, "run-1", checkpoint) == {
        "count": 1, "by_reason": {"changed-after-read": 1}, "examples": [str(bronze / "rewritten.jsonl")]}  # fmt: skip
    assert collect_ignored(LocalStorage(), runs, "run-2", checkpoint) == {}


def test_objects_of_a_batch_a_crash_left_uncommitted_still_wait_for_a_run(spark, tmp_path):
    """Spark logs a batch's files and offsets before running it; a batch that fails is planned,
    not committed, and the next query start runs it again: `watch` must start that run."""
    from iotpipe.lake.checkpoint import query_checkpoint, read_checkpoint
    from iotpipe.local.watch import unprocessed_bronze

    bronze, checkpoint = tmp_path / "bronze", tmp_path / "checkpoint"
    write_object(bronze, "part-0.jsonl", [event_line("a")])

    def crash(batch, batch_id):
        raise RuntimeError("the driver dies inside the batch")

    query = (
        job.read_bronze(spark, str(bronze), 8).writeStream.foreachBatch(crash)
        .option("checkpointLocation", query_checkpoint(str(checkpoint))).trigger(availableNow=True).start()
    )  # fmt: skip
    with pytest.raises(Exception, match="the driver dies"):
        query.awaitTermination()

    state = read_checkpoint(LocalStorage(), query_checkpoint(str(checkpoint)))
    assert state.offsets == [0] and state.commits == []
    assert unprocessed_bronze(LocalStorage(), str(bronze), str(checkpoint)) == {str(bronze / "part-0.jsonl")}
