"""De-duplication without streaming state (spark.dedup): one row per id in a batch, the seen-id
store (an Iceberg table), its horizon and expiry; and the lakes and checkpoints the job refuses."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from iotpipe.lake.checkpoint import CheckpointLayoutUnsupported
from spark import job
from spark.dedup import BROADCAST_KEYS, StoredKeys, first_arrivals, horizon_days, id_key
from tests.spark.test_streaming_job import event, gold_rows, metadata_of, run_job, table_of, write_objects

pytestmark = pytest.mark.spark


def write_later_object(bronze, lines: list[str]) -> None:
    (bronze / "part-later.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def keys_of(spark, ids: list[str]) -> set:
    frame = spark.createDataFrame([(i,) for i in ids], "event_id string").select(*id_key(F.col("event_id")))
    return {tuple(r) for r in frame.collect()}


def stored_keys(spark, lake) -> set:
    return {tuple(r) for r in spark.table(table_of(lake, "seen_ids")).select("id_key_a", "id_key_b").collect()}


def test_the_store_holds_the_keys_of_exactly_the_ids_gold_took(spark, tmp_path):
    write_objects(
        tmp_path / "bronze",
        [
            [event("a", "2026-11-20T10:00:00Z"), event("b", "2026-11-20T10:01:00Z"), "{x"],
            [event("a", "2026-11-20T10:00:00Z")],
        ],
    )
    run_job(spark, tmp_path)
    assert stored_keys(spark, tmp_path) == keys_of(spark, ["a", "b"])
    assert spark.table(table_of(tmp_path, "seen_ids")).count() == 2


def test_a_file_left_in_the_stores_folder_is_no_id_of_it(spark, tmp_path):
    """Only what a commit added is in the store: a Parquet file of keys left in its folder (a
    commit that never happened, or planted) turns no record into a duplicate."""
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    run_job(spark, tmp_path)
    folder = tmp_path / "checkpoint" / "seen-ids" / "data" / "arrival_date=2020-01-01"
    spark.createDataFrame([tuple(k) for k in keys_of(spark, ["b"])], "id_key_a long, id_key_b long").coalesce(
        1
    ).write.parquet(str(folder))
    write_later_object(tmp_path / "bronze", [event("b", "2026-11-20T10:00:00Z")])
    second = run_job(spark, tmp_path)
    assert sorted(r.event_id for r in gold_rows(spark, tmp_path)) == ["a", "b"]
    assert second["duplicates"] == 0


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
        unique, dropped = first_arrivals(rows, StoredKeys(keys, 3), rows_in_batch)
        kept_rows = sorted((r.event_id, r.location_city, r.source_file) for r in unique.collect())
        assert kept_rows == [("a", "Paris", "p2"), ("b", "Berlin", "p1")]
        # Counted where they are dropped: both copies of c (seen before), two later copies of a.
        assert (dropped.seen_before, dropped.repeated) == (2, 2)
    unique, dropped = first_arrivals(rows, None, 6)
    assert sorted(r.event_id for r in unique.collect()) == ["a", "b", "c"] and dropped.total == 3


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
        (row,) = first_arrivals(rows, None, 2)[0].collect()
        kept.add(row.temperature_c)
    assert kept == {19.0}


def test_a_checkpoint_of_the_two_query_job_is_refused_before_anything_runs(spark, tmp_path):
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    (tmp_path / "checkpoint" / "gold" / "offsets").mkdir(parents=True)
    (tmp_path / "checkpoint" / "gold" / "offsets" / "0").write_text("v1\n{}")
    with pytest.raises(CheckpointLayoutUnsupported, match="one query per sink: gold"):
        run_job(spark, tmp_path)
    assert not (tmp_path / "gold").exists() and not (tmp_path / "checkpoint" / "transform").exists()


def test_a_lake_of_plain_parquet_gold_is_refused_with_the_way_on(spark, tmp_path):
    """Gold written by the file sink of an earlier iotpipe (its _spark_metadata log) is not adopted."""
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    (tmp_path / "gold" / "_spark_metadata").mkdir(parents=True)
    (tmp_path / "gold" / "_spark_metadata" / "0").write_text("v1\n")
    with pytest.raises(CheckpointLayoutUnsupported, match="Iceberg tables now. Rebuild them from Bronze"):
        run_job(spark, tmp_path)
    assert not (tmp_path / "checkpoint" / "transform").exists()


def test_tables_holding_batches_beside_a_checkpoint_that_is_gone_are_refused(spark, tmp_path):
    """A new query would number its batches from 0 and read Bronze again: the store would take
    every row for a duplicate of Gold's, or Gold would take them twice."""
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    run_job(spark, tmp_path)
    (tmp_path / "checkpoint" / "transform").rename(tmp_path / "checkpoint-moved")
    with pytest.raises(CheckpointLayoutUnsupported, match="hold batches but the checkpoint"):
        run_job(spark, tmp_path)
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a"]


def run_a_then_its_copy_later(spark, tmp_path, days_ago: int, other_run_days: tuple = ()) -> tuple[dict, date]:
    """Run 1 takes in id `a`; its store entry is then dated `days_ago`, with entries of other
    batches on `other_run_days` ago; run 2, today, takes in a copy of `a` (horizon: 2 days)."""
    write_objects(tmp_path / "bronze", [[event("a", "2026-11-20T10:00:00Z")]])
    run_job(spark, tmp_path, dedup_horizon="2 days")
    seen = table_of(tmp_path, "seen_ids")
    (today,) = {r.arrival_date for r in spark.table(seen).collect()}
    old = today - timedelta(days=days_ago)
    spark.sql(f"UPDATE {seen} SET arrival_date = DATE '{old}'")
    for ago in other_run_days:
        spark.sql(f"INSERT INTO {seen} VALUES (1, {ago}, DATE '{today - timedelta(days=ago)}')")
    write_later_object(tmp_path / "bronze", [event("a", "2026-11-20T10:00:00Z")])
    return run_job(spark, tmp_path, dedup_horizon="2 days"), old


def days_stored(spark, lake) -> set:
    return {r.arrival_date for r in spark.table(table_of(lake, "seen_ids")).collect()}


def test_an_id_is_forgotten_after_the_horizon_and_its_day_is_deleted(spark, tmp_path):
    # Batches ran 5, 4 and 3 days ago and today: the last 3 days with batches, and the last 2
    # calendar days, leave out 5 days ago.
    second, old = run_a_then_its_copy_later(spark, tmp_path, days_ago=5, other_run_days=(4, 3))
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a", "a"]
    assert second["duplicates"] == 0
    assert old not in days_stored(spark, tmp_path)
    # Deleting a whole day is a delete of partitions: the store's history says so.
    assert "delete" in {s.operation for s in metadata_of(tmp_path, "seen_ids").main_line()}


def test_a_pause_longer_than_the_horizon_forgets_nothing(spark, tmp_path):
    # No batch ran for 9 days: the copy taken in after the pause is the id taken in before it.
    second, old = run_a_then_its_copy_later(spark, tmp_path, days_ago=9)
    assert [r.event_id for r in gold_rows(spark, tmp_path)] == ["a"]
    assert second["duplicates"] == 1
    assert old in days_stored(spark, tmp_path)


def test_every_batch_reconciles_whatever_it_holds(spark, tmp_path):
    """One run over a batch of new ids, one of copies only, one with no valid row, and one whose
    two copies of an id land in different Gold partitions: each batch's commits add up."""
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
    gold, quarantine = metadata_of(tmp_path, "gold"), metadata_of(tmp_path, "quarantine")
    query = gold.main_line()[0].query_id
    per_batch = []
    for batch, commit in sorted(gold.batches(query).items()):
        rejected = quarantine.batches(query)[batch]
        assert commit.count("iotpipe.input-rows") == rejected.count("iotpipe.input-rows")
        per_batch.append((commit.count("iotpipe.input-rows"), commit.added_records,
                          commit.count("iotpipe.duplicates"), rejected.added_records))  # fmt: skip
    assert per_batch == [(2, 2, 0, 0), (2, 0, 2, 0), (2, 0, 0, 2), (2, 1, 1, 0)]
    assert all(i == g + d + q for i, g, d, q in per_batch)
    assert (summary["gold_rows"], summary["duplicates"], summary["quarantined_rows"]) == (3, 3, 2)
