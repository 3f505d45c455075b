"""The streaming job in-process on the shared session: de-duplication across batches, late
events, file layout and idempotent reruns."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from iotpipe.sink_log import BatchFiles
from iotpipe.storage import LocalStorage
from spark import job

pytestmark = pytest.mark.spark


def event(event_id: str, when: str, city: str = "Berlin", temperature: float = 20.0) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "device_id": "dev-000001",
            "event_time": when,
            "location": {"city": city, "country": "DE", "lat": 52.5, "lon": 13.4},
            "temperature_c": temperature,
            "humidity_pct": 50.0,
            "battery_pct": 90,
            "firmware": "1.4.2",
        }
    )


def write_objects(bronze: Path, objects: list[list[str]]) -> None:
    """Write one Bronze object per list, with increasing mtimes so they are read in this order."""
    bronze.mkdir(parents=True, exist_ok=True)
    for index, lines in enumerate(objects):
        path = bronze / f"part-{index:05d}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.utime(path, (1_700_000_000 + index * 10, 1_700_000_000 + index * 10))


def run_job(spark, lake: Path, **overrides) -> dict:
    argv = [
        "--bronze",
        str(lake / "bronze"),
        "--gold",
        str(lake / "gold"),
        "--quarantine",
        str(lake / "quarantine"),
        "--checkpoint",
        str(lake / "checkpoint"),
        "--max-files-per-trigger",
        "1",
        "--shuffle-partitions",
        "2",
    ]
    for key, value in overrides.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return job.run(spark, job.build_parser().parse_args(argv))


def gold_rows(spark, lake: Path) -> list:
    return spark.read.parquet(str(lake / "gold")).collect()


def test_a_retransmission_in_a_later_batch_lands_in_gold_once(spark, tmp_path):
    write_objects(
        tmp_path / "bronze",
        [
            [event("a", "2026-11-20T10:00:00Z"), event("b", "2026-11-20T10:01:00Z")],
            [event("a", "2026-11-20T10:00:00Z"), event("c", "2026-11-20T10:02:00Z")],
        ],
    )
    summary = run_job(spark, tmp_path)
    assert sorted(r.event_id for r in gold_rows(spark, tmp_path)) == ["a", "b", "c"]
    assert (summary["batches"], summary["input_rows"], summary["gold_rows"], summary["duplicates"]) == (
        2,
        4,
        3,
        1,
    )


def test_events_days_older_than_the_previous_batch_are_not_dropped(spark, tmp_path):
    write_objects(
        tmp_path / "bronze",
        [
            [event("new", "2026-11-22T10:00:00Z")],
            [event("old", "2026-11-15T23:59:59Z"), event("older", "2025-01-01T00:00:00Z")],
        ],
    )
    run_job(spark, tmp_path)
    dates = {r.event_id: str(r.date) for r in gold_rows(spark, tmp_path)}
    assert dates == {"new": "2026-11-22", "old": "2026-11-15", "older": "2025-01-01"}


def test_an_id_seen_in_an_earlier_run_is_still_recognised_as_a_duplicate(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    run_job(spark, tmp_path)
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")], [event("a", "2026-11-20T10:00:00Z")]])
    second = run_job(spark, tmp_path)
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a"]
    assert (second["input_rows"], second["gold_rows"], second["duplicates"]) == (1, 0, 1)


def test_a_batch_writes_at_most_one_file_per_gold_partition(spark, tmp_path):
    cities = ["Berlin", "Zürich", "São Paulo", "Kraków"]
    lines = [event(f"e{i}", f"2026-11-{20 + i % 3}T10:{i % 60:02d}:00Z", cities[i % 4]) for i in range(400)]
    write_objects(tmp_path / "bronze", [lines[:200], lines[200:]])
    run_job(spark, tmp_path, shuffle_partitions=3)
    batches_with_files = 0
    logged = BatchFiles(LocalStorage(), str(tmp_path / "gold"))  # each batch's own files, not the compact's all
    for batch in range(2):
        files = logged.files(batch) or []
        per_partition = Counter(str(Path(path).parent) for path, _ in files)
        assert max(per_partition.values(), default=1) == 1
        batches_with_files += bool(files)
    assert batches_with_files == 2
    assert {r.location_city for r in gold_rows(spark, tmp_path)} == set(cities)


def test_a_rerun_after_success_processes_and_writes_nothing(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")], [event("b", "2026-11-21T10:00:00Z")]])
    run_job(spark, tmp_path)
    files_before = sorted(str(p) for p in (tmp_path / "gold").rglob("*") if p.is_file())
    again = run_job(spark, tmp_path)
    assert (again["batches"], again["input_rows"], again["gold_rows"]) == (0, 0, 0)
    assert sorted(str(p) for p in (tmp_path / "gold").rglob("*") if p.is_file()) == files_before


def test_the_run_summary_is_written_beside_the_checkpoint(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z"), "{broken"]])
    summary = run_job(spark, tmp_path, run_id="run-1")
    on_disk = json.loads((tmp_path / "checkpoint" / "runs" / "run-1.json").read_text())
    assert on_disk == summary == json.loads((tmp_path / "checkpoint" / "last_run.json").read_text())
    assert summary["quarantined_by_reason"] == {"malformed_json": 1}


def test_fail_after_commit_raises_only_after_everything_is_committed(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    with pytest.raises(job.InjectedFailure):
        run_job(spark, tmp_path, fault="fail-after-commit", run_id="r")
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a"]
    assert (tmp_path / "checkpoint" / "runs" / "r.json").exists()


def test_a_failure_between_the_gold_and_the_quarantine_write_is_replayed_exactly(spark, tmp_path):
    """Batch 1 dies after its Gold write, before its quarantine write and its seen-id entry. The
    replay skips Gold (its sink holds the batch), writes the quarantine, files the entry from
    the committed Gold files: nothing twice, nothing lost, later copies still duplicates."""
    write_objects(
        tmp_path / "bronze",
        [
            [event("a", "2026-11-20T10:00:00Z"), "{broken"],
            [
                event("a", "2026-11-20T10:00:00Z"),
                event("b", "2026-11-20T11:00:00Z"),
                "{bad",
                event("c", "2026-11-21T10:00:00Z"),
            ],
            [event("d", "2026-11-22T10:00:00Z")],
            [event("b", "2026-11-20T11:00:00Z")],
        ],
    )
    with pytest.raises(Exception, match="before the quarantine's"):
        run_job(spark, tmp_path, fault="fail-between-sinks:1")
    assert sorted(r.event_id for r in gold_rows(spark, tmp_path)) == ["a", "b", "c"]
    assert spark.read.parquet(str(tmp_path / "quarantine")).count() == 1
    replay = run_job(spark, tmp_path)
    assert sorted(r.event_id for r in gold_rows(spark, tmp_path)) == ["a", "b", "c", "d"]
    assert sorted(r.raw_line for r in spark.read.parquet(str(tmp_path / "quarantine")).collect()) == ["{bad", "{broken"]
    assert (replay["input_rows"], replay["gold_rows"], replay["quarantined_rows"], replay["duplicates"]) == (6, 3, 1, 2)


def test_unknown_faults_are_rejected_before_any_work():
    with pytest.raises(ValueError, match="unknown fault"):
        job.parse_fault("meteor-strike")


def test_counts_of_batches_spark_no_longer_reports_are_let_go():
    """A processing-time run keeps going for days: the batch counts it holds must not grow with it."""
    from types import SimpleNamespace

    recorded = []
    ledger = SimpleNamespace(record=lambda sink, batch: recorded.append((sink, batch["batchId"])))
    observed = {n: {"gold": {}, "quarantine": {}} for n in range(200)}
    query = SimpleNamespace(recentProgress=[{"batchId": n} for n in range(100, 200)])
    job.record_batches(ledger, query, observed)
    assert sorted(observed) == list(range(100, 200))
    assert len(recorded) == 200
