"""The streaming job in-process on the shared session: de-duplication across batches, late
events, file layout, idempotent reruns and replays, each batch's tagged commits."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from iotpipe.lake.iceberg import BATCH_ID, DUPLICATES, INPUT_ROWS, QUERY_ID, RUN_ID, added_files, read_metadata
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import SPARK_CATALOG, sqlite_path
from iotpipe.local.catalog import LocalGlue
from spark import job
from tests.conftest import SESSION_CATALOG

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


def database_of(lake: Path) -> str:
    """Each test lake's tables in a database of their own, in the session's one catalog."""
    return "t" + hashlib.sha1(str(lake.resolve()).encode()).hexdigest()[:16]


def table_of(lake: Path, name: str) -> str:
    return f"{SPARK_CATALOG}.{database_of(lake)}.{name}"


def metadata_of(lake: Path, name: str):
    """The table's metadata as the Lambdas read it (iotpipe.lake.iceberg)."""
    return read_metadata(LocalStorage(), LocalGlue(sqlite_path(SESSION_CATALOG)), database_of(lake), name)


def run_job(spark, lake: Path, **overrides) -> dict:
    return job.run(spark, job.build_parser().parse_args(job_argv(lake, **overrides)))


def job_argv(lake: Path, **overrides) -> list[str]:
    """The job's arguments for a test lake (its tables in the session's catalog); `overrides`
    as keyword arguments (`max_files_per_trigger=64`) replace or add options."""
    argv = [
        "--catalog",
        SESSION_CATALOG,
        "--catalog-database",
        database_of(lake),
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
    return argv


def gold_rows(spark, lake: Path) -> list:
    return spark.table(table_of(lake, "gold")).collect()


def quarantine_rows(spark, lake: Path) -> list:
    return spark.table(table_of(lake, "quarantine")).collect()


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
    gold = metadata_of(tmp_path, "gold")
    commits = gold.batches(gold.main_line()[0].query_id)
    assert sorted(commits) == [0, 1]
    for commit in commits.values():
        files = added_files(LocalStorage(), commit)
        per_partition = Counter(tuple(sorted(f.partition.items())) for f in files)
        assert files and max(per_partition.values()) == 1
    assert {r.location_city for r in gold_rows(spark, tmp_path)} == set(cities)


def test_a_rerun_after_success_processes_and_commits_nothing(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")], [event("b", "2026-11-21T10:00:00Z")]])
    run_job(spark, tmp_path)
    snapshots_before = {
        name: sorted(metadata_of(tmp_path, name).snapshots) for name in ("gold", "quarantine", "seen_ids")
    }
    files_before = sorted(str(p) for p in (tmp_path / "gold").rglob("*.parquet"))
    again = run_job(spark, tmp_path)
    assert (again["batches"], again["input_rows"], again["gold_rows"]) == (0, 0, 0)
    assert {n: sorted(metadata_of(tmp_path, n).snapshots) for n in snapshots_before} == snapshots_before
    assert sorted(str(p) for p in (tmp_path / "gold").rglob("*.parquet")) == files_before


def test_every_batch_commits_once_to_each_table_tagged_with_its_counts_and_its_run(spark, tmp_path):
    """What VerifyGold reads: per table and batch one commit on the main line, tagged with the query
    and the batch; Gold's with the input and the duplicates counted where they were dropped, the
    seen-id store's (the batch's last commit) with the run, and as many ids as Gold took."""
    write_objects(
        tmp_path / "bronze",
        [
            [event("a", "2026-11-20T10:00:00Z"), event("a", "2026-11-20T10:00:00Z"), "{x"],
            [event("a", "2026-11-20T10:00:00Z")],
        ],
    )
    run_job(spark, tmp_path, run_id="attempt-1", lease_holder="run-7")
    gold, quarantine, seen = (metadata_of(tmp_path, n) for n in ("gold", "quarantine", "seen_ids"))
    query = gold.main_line()[0].query_id
    assert query and all(s.summary[QUERY_ID] == query for t in (gold, quarantine, seen) for s in t.main_line())
    assert [
        (b, s.count(INPUT_ROWS), s.added_records, s.count(DUPLICATES)) for b, s in sorted(gold.batches(query).items())
    ] == [
        (0, 3, 1, 1),
        (1, 1, 0, 1),
    ]
    assert [(b, s.added_records) for b, s in sorted(quarantine.batches(query).items())] == [(0, 1), (1, 0)]
    assert [(b, s.summary[RUN_ID], s.added_records) for b, s in sorted(seen.batches(query).items())] == [
        (0, "run-7", 1),
        (1, "run-7", 0),
    ]
    assert len(gold.main_line()) == len(quarantine.main_line()) == 2 and BATCH_ID in seen.main_line()[0].summary


def test_the_run_summary_is_written_beside_the_checkpoint(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z"), "{broken"]])
    summary = run_job(spark, tmp_path, run_id="run-1")
    on_disk = json.loads((tmp_path / "checkpoint" / "runs" / "run-1.json").read_text())
    assert on_disk == summary == json.loads((tmp_path / "checkpoint" / "last_run.json").read_text())
    assert (summary["input_rows"], summary["gold_rows"], summary["quarantined_rows"]) == (2, 1, 1)


def test_fail_after_commit_raises_only_after_everything_is_committed(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    with pytest.raises(job.InjectedFailure):
        run_job(spark, tmp_path, fault="fail-after-commit", run_id="r")
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a"]
    assert (tmp_path / "checkpoint" / "runs" / "r.json").exists()


def test_a_failure_between_the_gold_and_the_quarantine_write_is_replayed_exactly(spark, tmp_path):
    """Batch 1 fails after its Gold commit, before its quarantine commit and its seen-id entry. The
    replay skips Gold (the table holds the batch's tagged commit), commits the quarantine and the
    entry from Gold's commit: nothing twice, nothing lost, later copies still duplicates."""
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
    assert len(quarantine_rows(spark, tmp_path)) == 1
    replay = run_job(spark, tmp_path)
    assert sorted(r.event_id for r in gold_rows(spark, tmp_path)) == ["a", "b", "c", "d"]
    assert sorted(r.raw_line for r in quarantine_rows(spark, tmp_path)) == ["{bad", "{broken"]
    # The replayed batch 1 counts as its Gold commit recorded it (the first attempt's).
    assert (replay["input_rows"], replay["gold_rows"], replay["quarantined_rows"], replay["duplicates"]) == (6, 3, 1, 2)
    assert sorted(metadata_of(tmp_path, "gold").batches(metadata_of(tmp_path, "gold").main_line()[0].query_id)) == [
        0,
        1,
        2,
        3,
    ]


def test_unknown_faults_are_rejected_before_any_work():
    with pytest.raises(ValueError, match="unknown fault"):
        job.parse_fault("meteor-strike")


def test_counts_of_batches_spark_no_longer_reports_are_let_go():
    """A processing-time run keeps going for days: the batch counts it holds must not grow with it."""
    from types import SimpleNamespace

    counts = {"input": 0, "gold": 0, "quarantined": 0, "duplicates": 0}
    writer = SimpleNamespace(committed={n: dict(counts) for n in range(200)})
    query = SimpleNamespace(recentProgress=[{"batchId": n} for n in range(100, 200)])
    followed = job.CommittedBatches(LocalStorage(), "/nonexistent-checkpoint", on_committed=lambda batch: None)
    followed.record(query, writer)
    assert sorted(writer.committed) == list(range(100, 200))
