"""De-duplication without streaming state (spark.dedup): one row per id in a batch, the
seen-id store, its horizon and expiry, crash replays; and the checkpoint layout the job refuses."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from iotpipe.sink_log import CheckpointLayoutUnsupported
from iotpipe.storage import LocalStorage
from spark import job
from spark.dedup import BROADCAST_KEYS, SEEN_IDS, SeenIds, StoredKeys, first_arrivals, horizon_days
from tests.spark.test_streaming_job import event, gold_rows, run_job, write_objects

pytestmark = pytest.mark.spark

TODAY = date(2026, 11, 27)


def fake_gold(spark, gold: Path, batches: dict[int, list[str]]) -> None:
    """A Gold sink whose log says batch n committed one file holding `batches[n]`'s ids."""
    (gold / "_spark_metadata").mkdir(parents=True)
    for batch, ids in batches.items():
        folder = gold / f"batch-{batch}"
        spark.createDataFrame([(i,) for i in ids], "event_id string").coalesce(1).write.parquet(str(folder))
        (data,) = folder.glob("*.parquet")
        entry = {"path": data.as_uri(), "size": data.stat().st_size, "isDir": False, "action": "add"}
        (gold / "_spark_metadata" / str(batch)).write_text("v1\n" + json.dumps(entry))


def write_later_object(bronze: Path, lines: list[str]) -> None:
    (bronze / "part-later.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def store(spark, tmp_path: Path, horizon: str = "7 days") -> SeenIds:
    return SeenIds(spark, LocalStorage(), str(tmp_path / "checkpoint"), str(tmp_path / "gold"), horizon)


def seen_ids(seen: SeenIds, batch: int, today: date = TODAY) -> set:
    stored = seen.before(batch, today)
    return set() if stored is None else {tuple(r) for r in stored.keys.collect()}


def keys_of(spark, ids: list[str]) -> set:
    from spark.dedup import id_key

    frame = spark.createDataFrame([(i,) for i in ids], "event_id string").select(*id_key(F.col("event_id")))
    return {tuple(r) for r in frame.collect()}


def test_a_batch_is_checked_against_earlier_batches_only_and_within_the_horizon(spark, tmp_path):
    fake_gold(spark, tmp_path / "gold", {0: ["a", "b"], 1: ["c"], 2: ["d"]})
    seen = store(spark, tmp_path, horizon="1 day")
    assert (seen.remember(0, TODAY - timedelta(days=8)), seen.remember(1, TODAY - timedelta(days=1))) == (2, 1)
    assert seen.remember(2, TODAY) == 1
    # Batch 0 arrived 8 days ago: past a 1-day horizon, and before the last 2 days with batches.
    # Batch 2 is not before batch 2.
    assert seen_ids(seen, 2) == keys_of(spark, ["c"])
    assert seen_ids(seen, 3) == keys_of(spark, ["c", "d"])
    assert seen_ids(seen, 1) == set()
    assert seen.expire(TODAY) > 0
    remaining = {p.parent.parent.name for p in (tmp_path / "checkpoint" / SEEN_IDS).rglob("*.parquet")}
    assert remaining == {f"arrival_date={TODAY - timedelta(days=1)}", f"arrival_date={TODAY}"}


def test_a_replayed_batch_does_not_take_its_own_earlier_entry_for_a_duplicate(spark, tmp_path):
    fake_gold(spark, tmp_path / "gold", {0: ["a"], 1: ["b"]})
    seen = store(spark, tmp_path)
    seen.remember(0, TODAY)
    seen.remember(1, TODAY)  # the crashed attempt got this far; batch 1 runs again
    rows = spark.createDataFrame(
        [(i, "p1") for i in ("a", "b", "b", "e")], "event_id string, source_file string"
    ).withColumn("event_time", F.current_timestamp())
    kept = sorted(r.event_id for r in first_arrivals(rows, seen.before(1, TODAY), 4).collect())
    assert kept == ["b", "e"]
    # A replay after midnight files its entry under another day: still one batch, still excluded.
    seen.remember(1, TODAY + timedelta(days=1))
    assert seen_ids(seen, 1, TODAY + timedelta(days=1)) == keys_of(spark, ["a"])


def test_horizons_are_whole_days_rounded_up_and_a_bad_one_stops_the_job_before_it_plans(tmp_path):
    horizons = ("7 days", "1 day", "36 hours", "24 hours", "1 Week", "7 DAYS")
    assert [horizon_days(h) for h in horizons] == [7, 1, 2, 1, 7, 7]
    for bad in ("a week", "0 days", "90 minutes"):
        with pytest.raises(ValueError, match="expected '<n> days'"):
            horizon_days(bad)
    assert horizon_days("9999 days") == 9999
    for too_long in ("10000 days", "1000000 days", "99999999999 weeks"):
        with pytest.raises(ValueError, match="at most 9999 days"):
            horizon_days(too_long)
    with pytest.raises(SystemExit):
        job.build_parser().parse_args(["--bronze", "b", "--gold", "g", "--quarantine", "q", "--checkpoint", "c",
                                       "--dedup-horizon", "1000000 days"])  # fmt: skip


def test_an_entry_a_driver_did_not_finish_writing_is_not_read(spark, tmp_path):
    """A driver killed while writing an entry leaves files in `_temporary/` and no `_SUCCESS`:
    not an entry (a later batch would fail reading it), and its replay writes the entry again."""
    fake_gold(spark, tmp_path / "gold", {0: ["a"]})
    seen = store(spark, tmp_path)
    seen.remember(0, TODAY)
    root = tmp_path / "checkpoint" / SEEN_IDS
    leftover = root / f"arrival_date={TODAY}" / "batch=1" / "_temporary" / "0" / "part-00000.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"not parquet, cut short")
    unfinished = root / f"arrival_date={TODAY}" / "batch=2" / "part-00000.parquet"
    unfinished.parent.mkdir(parents=True)
    unfinished.write_bytes(b"no _SUCCESS beside it")
    assert seen_ids(seen, 3) == keys_of(spark, ["a"])


def entry_folders(tmp_path: Path) -> dict[str, list[str]]:
    """Arrival day -> the complete entries (folders holding `_SUCCESS`) the store has for it."""
    found: dict[str, list[str]] = {}
    for marker in sorted((tmp_path / "checkpoint" / SEEN_IDS).rglob("_SUCCESS")):
        found.setdefault(marker.parent.parent.name, []).append(marker.parent.name)
    return found


def test_many_entries_merge_into_few_and_the_store_answers_the_same(spark, tmp_path):
    """A finished day's entries become one; today's, past FANOUT of a level, one of the next
    level. The entry of the batch being written (a crashed attempt's) is never merged."""
    ids = {n: [f"id{n}"] for n in range(30)}
    fake_gold(spark, tmp_path / "gold", ids)
    seen = store(spark, tmp_path)
    for n in range(0, 5):
        seen.remember(n, TODAY - timedelta(days=1))
    for n in range(5, 21):  # 16 of today's, then batch 20: a crashed attempt's entry
        seen.remember(n, TODAY)
    expected = {n: seen_ids(seen, n) for n in (20, 21)}
    assert expected[20] == keys_of(spark, [f"id{n}" for n in range(20)])
    assert seen.merge(20, TODAY) == 5 + 15
    assert seen.merge(20, TODAY) == 0
    folders = entry_folders(tmp_path)
    assert [f.split("-")[0] for f in folders[f"arrival_date={TODAY - timedelta(days=1)}"]] == ["merged=1"]
    assert sorted(f.split("-")[0] for f in folders[f"arrival_date={TODAY}"]) == ["batch=20", "merged=1"]
    assert {n: seen_ids(seen, n) for n in (20, 21)} == expected
    for n in range(21, 30):  # batch 20 committed after all; ten of level 0 again
        seen.remember(n, TODAY)
    assert seen.merge(30, TODAY) == 10  # level 0: batch=20..29
    assert sorted(f.split("-")[0] for f in entry_folders(tmp_path)[f"arrival_date={TODAY}"]) == ["merged=1"] * 2
    assert seen_ids(seen, 30) == keys_of(spark, [f"id{n}" for n in range(30)])
    left = {p.parent.name for p in (tmp_path / "checkpoint" / SEEN_IDS).rglob("*") if p.is_file()}
    assert sorted(f.split("-")[0] for f in left) == ["merged=1"] * 3, "a merged entry leaves no file behind"


def test_a_merge_cut_short_loses_no_id_and_the_next_one_finishes_it(spark, tmp_path, monkeypatch):
    fake_gold(spark, tmp_path / "gold", {n: [f"id{n}"] for n in range(12)})
    seen = store(spark, tmp_path)
    for n in range(12):
        seen.remember(n, TODAY)
    expected = seen_ids(seen, 12)
    deletes = []

    def delete_then_die(uri):
        if len(deletes) == 3:
            raise OSError("killed mid-merge")
        deletes.append(uri)
        LocalStorage().delete(uri)

    monkeypatch.setattr(seen.storage, "delete", delete_then_die)
    with pytest.raises(OSError, match="killed"):
        seen.merge(12, TODAY)
    monkeypatch.undo()
    assert seen_ids(seen, 12) == expected  # ids are in the merged entry and in what is left
    unfinished = tmp_path / "checkpoint" / SEEN_IDS / f"arrival_date={TODAY}" / "merged=1-11-0123456789ab"
    unfinished.mkdir()
    (unfinished / "part-00000.parquet").write_bytes(b"a merge killed while writing: no _SUCCESS")
    assert seen_ids(seen, 12) == expected
    left = [f for f in entry_folders(tmp_path)[f"arrival_date={TODAY}"] if f.startswith("batch=")]
    assert 8 < len(left) < 12
    assert seen.merge(12, TODAY) == len(left)  # what the cut merge left of level 0; its entry stays too
    assert [f.split("-")[0] for f in entry_folders(tmp_path)[f"arrival_date={TODAY}"]] == ["merged=1"] * 2
    assert seen_ids(seen, 12) == expected
    assert seen.merge(12, TODAY + timedelta(days=1)) == 2  # the day is over: one entry
    assert [f.split("-")[0] for f in entry_folders(tmp_path)[f"arrival_date={TODAY}"]] == ["merged=2"]
    assert seen_ids(seen, 12, TODAY + timedelta(days=1)) == expected


def test_one_row_per_id_within_a_batch_even_when_the_copies_differ(spark):
    """Copies of an id in one batch may land in different Gold partitions (another day or city):
    still one row, the earliest event time, and ids an earlier batch wrote are all dropped."""
    rows = spark.createDataFrame(
        [
            ("a", "2026-11-20 10:00:00", "Berlin", "p1"),
            ("a", "2026-11-19 10:00:00", "Paris", "p2"),
            ("a", "2026-11-20 10:00:00", "Berlin", "p3"),
            ("b", "2026-11-20 10:00:00", "Berlin", "p1"),
            ("c", "2026-11-20 10:00:00", "Berlin", "p1"),
            ("c", "2026-11-20 10:00:00", "Berlin", "p2"),
        ],
        "event_id string, event_time string, location_city string, source_file string",
    ).withColumn("event_time", F.to_timestamp("event_time"))
    keys = spark.createDataFrame([tuple(k) for k in keys_of(spark, ["c"])], "id_key_a long, id_key_b long")
    # Both ways of finding the ids an earlier batch wrote: the batch's keys broadcast, or shuffled.
    for rows_in_batch in (6, BROADCAST_KEYS + 1):
        kept = first_arrivals(rows, StoredKeys(keys, 3), rows_in_batch).collect()
        kept_rows = sorted((r.event_id, r.location_city, r.source_file) for r in kept)
        assert kept_rows == [("a", "Paris", "p2"), ("b", "Berlin", "p1")]
    assert sorted(r.event_id for r in first_arrivals(rows, None, 6).collect()) == ["a", "b", "c"]


def test_a_large_batchs_keys_are_hashed_in_partitions_that_fit_without_spilling(spark):
    """The store probes a hash table of the batch's keys per partition; that table cannot spill,
    so a larger batch gets more partitions (about 16 MiB of table each), never larger tables."""
    from spark.dedup import HASH_BYTES_PER_PARTITION, HASHED_KEY_BYTES, _written_before

    keys = spark.createDataFrame([(1, 2)], "id_key_a long, id_key_b long")
    for rows_in_batch, stored_partitions in ((BROADCAST_KEYS + 1, 4), (10_000_000, 4), (10_000_000, 500)):
        plan = _written_before(StoredKeys(keys, stored_partitions), keys, rows_in_batch)._jdf.queryExecution()
        text = plan.executedPlan().toString()
        hashed = -(-rows_in_batch * HASHED_KEY_BYTES // HASH_BYTES_PER_PARTITION)
        assert "ShuffledHashJoin" in text and "SortMergeJoin" not in text, text
        assert f", {max(hashed, stored_partitions)}), REPARTITION_BY_NUM" in text, text


def test_which_of_two_exactly_tied_copies_is_kept_does_not_depend_on_row_order(spark):
    """Same id, same event time, same file, different readings: the copy kept is the same
    whatever order the rows reach the window in (a replay must not pick another)."""
    copies = [("a", "2026-11-20 10:00:00", "p1", 21.5), ("a", "2026-11-20 10:00:00", "p1", 19.0)]
    schema = "event_id string, event_time string, source_file string, temperature_c double"
    kept = set()
    for ordered in (copies, copies[::-1]):
        rows = spark.createDataFrame(ordered, schema).withColumn("event_time", F.to_timestamp("event_time")).coalesce(1)
        (row,) = first_arrivals(rows, None, 2).collect()
        kept.add(row.temperature_c)
    assert kept == {19.0}


def test_a_checkpoint_of_the_two_query_job_is_refused_before_anything_runs(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    (tmp_path / "checkpoint" / "gold" / "offsets").mkdir(parents=True)
    (tmp_path / "checkpoint" / "gold" / "offsets" / "0").write_text("v1\n{}")
    with pytest.raises(CheckpointLayoutUnsupported, match="one query per sink: gold"):
        run_job(spark, tmp_path)
    assert not (tmp_path / "gold").exists() and not (tmp_path / "checkpoint" / "transform").exists()


def run_a_then_its_copy_later(spark, tmp_path, days_ago: int, other_run_days: tuple = ()) -> tuple[dict, Path]:
    """Run 1 takes in id `a`; its store entry is then dated `days_ago`, with entries of other
    batches on `other_run_days` ago; run 2, today, takes in a copy of `a` (horizon: 2 days)."""
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    run_job(spark, tmp_path, dedup_horizon="2 days")
    root = tmp_path / "checkpoint" / SEEN_IDS
    (day,) = root.glob("arrival_date=*")
    today = date.fromisoformat(day.name.split("=")[1])
    old = root / f"arrival_date={today - timedelta(days=days_ago)}"
    day.rename(old)
    for ago in other_run_days:
        marker = root / f"arrival_date={today - timedelta(days=ago)}" / "batch=-1" / "_SUCCESS"
        marker.parent.mkdir(parents=True)
        marker.touch()
    write_later_object(tmp_path / "bronze", [event("a", "2026-11-20T10:00:00Z")])
    return run_job(spark, tmp_path, dedup_horizon="2 days"), old


def test_an_id_is_forgotten_after_the_horizon_and_its_day_is_deleted(spark, tmp_path):
    # Batches ran 5, 4 and 3 days ago and today: the last 3 days with batches, and the last 2
    # calendar days, leave out 5 days ago.
    second, old = run_a_then_its_copy_later(spark, tmp_path, days_ago=5, other_run_days=(4, 3))
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a", "a"]
    assert second["duplicates"] == 0
    assert not list(old.rglob("*.parquet"))


def test_a_pause_longer_than_the_horizon_forgets_nothing(spark, tmp_path):
    # No batch ran for 9 days: the copy taken in after the pause is the id taken in before it.
    second, old = run_a_then_its_copy_later(spark, tmp_path, days_ago=9)
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a"]
    assert second["duplicates"] == 1
    assert list(old.rglob("*.parquet"))


def test_a_store_under_a_folder_named_like_one_of_its_days_is_read_from_its_own_root(spark, tmp_path):
    lake = tmp_path / "arrival_date=2020-01-01" / "lake"
    write_objects(lake / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    run_job(spark, lake)
    write_later_object(lake / "bronze", [event("a", "2026-11-20T10:00:00Z"), event("b", "2026-11-20T10:00:00Z")])
    second = run_job(spark, lake)
    assert sorted(r.event_id for r in gold_rows(spark, lake)) == ["a", "b"]
    assert second["duplicates"] == 1


def test_every_batch_reconciles_whatever_it_holds(spark, tmp_path):
    """One run over a batch of new ids, one of copies only, one with no valid row, and one whose
    two copies of an id land in different Gold partitions: each batch's ledger entries add up."""
    write_objects(
        tmp_path / "bronze",
        [
            [event("a", "2026-11-20T10:00:00Z"), event("x", "2026-11-20T10:05:00Z")],
            [event("a", "2026-11-20T10:00:00Z"), event("a", "2026-11-20T10:00:00Z")],
            ["{not json", "   "],
            [event("b", "2026-11-20T10:00:00Z"), event("b", "2026-11-21T11:00:00Z", city="Paris")],
        ],
    )
    summary = run_job(spark, tmp_path)
    assert sorted(r.event_id for r in gold_rows(spark, tmp_path)) == ["a", "b", "x"]
    ledger = tmp_path / "checkpoint" / "ledger"
    per_batch = []
    for batch in summary["batch_ids"]:
        gold = json.loads((ledger / "gold" / f"{batch}.json").read_text())
        quarantine = json.loads((ledger / "quarantine" / f"{batch}.json").read_text())
        valid, written = gold["observed"]["valid"]["rows"], gold["observed"]["gold"]["rows"]
        rejected = sum(quarantine["observed"]["quarantine"].values())
        assert gold["input_rows"] == quarantine["input_rows"] == valid + rejected
        per_batch.append((gold["input_rows"], written, valid - written, rejected))
    assert per_batch == [(2, 2, 0, 0), (2, 0, 2, 0), (2, 0, 0, 2), (2, 1, 1, 0)]
    assert (summary["gold_rows"], summary["duplicates"], summary["quarantined_rows"]) == (3, 3, 2)


@pytest.mark.parametrize(
    "spelling", ["{}/./checkpoint", "{}//checkpoint", "{}/sub/../checkpoint", "file://{}/checkpoint"]
)
def test_the_store_answers_however_the_checkpoint_is_spelled(spark, tmp_path, spelling):
    """Storage lists in its own spelling of a path; the store must still find its entries."""
    (tmp_path / "sub").mkdir()
    fake_gold(spark, tmp_path / "gold", {0: ["a"]})
    seen = SeenIds(spark, LocalStorage(), spelling.format(tmp_path), str(tmp_path / "gold"), "1 day")
    for days_ago in (9, 5, 0):
        seen.remember(0, TODAY - timedelta(days=days_ago))
    assert seen_ids(seen, 1) == keys_of(spark, ["a"])
    assert seen.expire(TODAY) > 0  # 9 days ago: before the last two days with batches
