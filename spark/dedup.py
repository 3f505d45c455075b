"""Exactly-once de-duplication of Gold rows without streaming state.

Each Gold micro-batch keeps the first arrival of every `event_id`:

1. within the batch, one row per id (a batch's rows arrive together; the copy with the
   earliest event time is kept);
2. across batches, the rows whose id an earlier batch already wrote to Gold are dropped, by a
   semi-join against the *seen-id store*: the Iceberg table `seen_ids`, the 128-bit key of every
   id a batch wrote to Gold, partitioned by the UTC day the batch ran (`arrival_date`).

A batch's keys are appended to the store from the rows its Gold commit added (read back from that
snapshot), after the Gold and quarantine commits and before the query commits the batch, in a
commit tagged with the batch (spark.tables). A replay skips what is committed already, so the
store holds each batch's ids once, and a batch whose Gold commit is not done yet finds no entry of
its own in the store. VerifyGold checks each batch's entry against its Gold commit, so an id that
did not come from Gold is noticed (iotpipe.run.verify).

Expiry deletes whole days older than the horizon (a metadata-only delete of partitions), keeping at
least the last horizon + 1 days on which batches ran: nothing scans remembered ids to evict them.
Small files are merged by table maintenance (spark/maintain.py), not here.

The key is two independent 64-bit xxhash values of the id: the chance that two of a billion
distinct ids share both is about 1e-21, far below any hardware error rate, and the comparison is
of longs, not of strings. Each dropped row is counted where it is dropped (`Dropped`): the
reconciliation checks those counts against what Gold committed, never derives one from the other.

Python 3.9 syntax (EMR 7's interpreter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import List, Optional, Tuple

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from iotpipe.lake.horizon import horizon_days
from iotpipe.lake.tables import SEEN_IDS
from spark.tables import IcebergTable

ID_KEY = ("id_key_a", "id_key_b")


def id_key(event_id: Column) -> List[Column]:
    """The 128-bit key of an id: xxhash64 of the id and of the id behind a fixed prefix."""
    return [
        F.xxhash64(event_id).alias(ID_KEY[0]),
        F.xxhash64(F.concat(F.lit("iotpipe-id:"), event_id)).alias(ID_KEY[1]),
    ]


# Up to this many keys (16 bytes each), a set of keys is broadcast to every task instead of
# being shuffled with the rows: the usual case, where few ids repeat.
BROADCAST_KEYS = 500_000
MIN_PARTITIONS = 4
# A shuffle of stored keys takes about this many bytes of the store's files per partition.
STORE_BYTES_PER_PARTITION = 16 * 2**20
# A large batch's keys are hashed per partition, in memory that cannot spill (Spark's shuffled
# hash join): about 128 bytes per key with the table's slots and growth, 16 MiB per partition.
HASHED_KEY_BYTES = 128
HASH_BYTES_PER_PARTITION = 16 * 2**20


@dataclass(frozen=True)
class StoredKeys:
    """Keys the store holds for earlier batches, and how many partitions a shuffle of them takes
    (about 16 MiB of the store's files each, so a task's share does not grow with the store)."""

    keys: DataFrame
    partitions: int


@dataclass(frozen=True)
class Dropped:
    """The rows de-duplication dropped, counted where it dropped them."""

    seen_before: int = 0  # an earlier batch wrote their id to Gold
    repeated: int = 0  # a copy of an id that appears more than once in the batch

    @property
    def total(self) -> int:
        return self.seen_before + self.repeated


def first_arrivals(rows: DataFrame, seen: Optional[StoredKeys], rows_in_batch: int) -> Tuple[DataFrame, Dropped]:
    """One row per id, without the ids in `seen` (keys of earlier batches), and what was dropped.

    Meant for a cached batch: the keys are read from it first, counted per key, to find the few
    ids that need anything done (repeated within the batch, or seen before); every other row passes
    through two probes of a broadcast set, and no wide row is shuffled for de-duplication.
    """
    keyed = rows.select("*", *id_key(F.col("event_id")))
    counts = keyed.groupBy(*ID_KEY).count()
    seen_before = 0
    if seen is not None:
        known, _ = _small(_written_before(seen, counts.select(*ID_KEY), rows_in_batch).distinct())
        seen_before = counts.join(known, list(ID_KEY), "left_semi").agg(F.coalesce(F.sum("count"), F.lit(0))).first()[0]
        keyed = keyed.join(known, list(ID_KEY), "left_anti")
        counts = counts.join(known, list(ID_KEY), "left_anti")
    repeated_counts = counts.where(F.col("count") > 1).localCheckpoint()
    keys, copies = repeated_counts.agg(F.count(F.lit(1)), F.coalesce(F.sum("count"), F.lit(0))).first()
    repeated = repeated_counts.select(*ID_KEY)
    repeated = F.broadcast(repeated) if keys <= BROADCAST_KEYS else repeated
    once = keyed.join(repeated, list(ID_KEY), "left_anti")
    # The earliest copy, then its file; the other columns only break exact ties, so that which
    # copy is kept never depends on how the rows happen to be ordered.
    tie_breakers = [c for c in rows.columns if c not in ("event_time", "source_file")]
    by_key = Window.partitionBy(*ID_KEY).orderBy("event_time", "source_file", *tie_breakers)
    first_of_repeated = (
        keyed.join(repeated, list(ID_KEY), "left_semi")
        .withColumn("_copy", F.row_number().over(by_key))
        .where(F.col("_copy") == 1)
        .drop("_copy")
    )
    return once.unionByName(first_of_repeated).drop(*ID_KEY), Dropped(int(seen_before), int(copies - keys))


def _written_before(seen: StoredKeys, keys: DataFrame, rows_in_batch: int) -> DataFrame:
    """The batch's keys an earlier batch wrote. A batch of few rows has its keys broadcast and
    the store read once, with no shuffle. A large batch and the store are shuffled alike (a
    broadcast of a whole large batch's keys could exhaust the heap), and each partition of the
    batch's keys is hashed for the store's to probe: the store, the side that grows, is never
    sorted (the sort-merge join took twice as long at 18 M stored ids). The hash table cannot
    spill, so there are enough partitions for each to hold at most HASH_BYTES_PER_PARTITION."""
    if rows_in_batch <= BROADCAST_KEYS:
        return seen.keys.join(F.broadcast(keys), list(ID_KEY), "left_semi")
    hashed = _ceil_div(rows_in_batch * HASHED_KEY_BYTES, HASH_BYTES_PER_PARTITION)
    by_key = [max(seen.partitions, hashed), *ID_KEY]
    batch_keys = keys.repartition(*by_key).hint("shuffle_hash")
    return seen.keys.repartition(*by_key).join(batch_keys, list(ID_KEY), "left_semi")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _small(keys: DataFrame) -> Tuple[DataFrame, int]:
    """`keys` computed once (eagerly), marked for broadcast if small enough, and how many there are."""
    keys = keys.localCheckpoint()
    count = keys.count()
    return (F.broadcast(keys) if count <= BROADCAST_KEYS else keys), count


class SeenIds:
    """The seen-id store: which ids Gold holds, by arrival day, as an Iceberg table."""

    def __init__(self, spark: SparkSession, database: str, horizon: str) -> None:
        self.spark = spark
        self.table = IcebergTable(spark, database, SEEN_IDS)
        self.days = horizon_days(horizon)

    def stored_days(self) -> List[date]:
        """The arrival days the store holds (its partitions, from the table's metadata)."""
        rows = self.spark.sql(f"SELECT partition.arrival_date AS day FROM {self.table.name}.partitions").collect()
        return sorted(row["day"] for row in rows if row["day"] is not None)

    def oldest_kept(self, today: date, days: List[date]) -> date:
        """The oldest arrival day the store still answers for: `horizon` days before today, or
        earlier if the job did not run on each of those days. The entries of the last horizon + 1
        days on which batches ran are kept, so a pause longer than the horizon forgets nothing
        (a copy processed after the pause is still compared with the ids before it)."""
        ran = sorted(set(days) | {today})
        return min(today - timedelta(days=self.days), ran[-(self.days + 1)] if len(ran) > self.days else ran[0])

    def expire(self, today: date, days: List[date]) -> int:
        """Delete the arrival days older than `oldest_kept` (whole partitions: a metadata-only
        delete); return how many days went."""
        oldest = self.oldest_kept(today, days)
        old = [day for day in days if day < oldest]
        if old:
            self.spark.sql(f"DELETE FROM {self.table.name} WHERE arrival_date < DATE '{oldest.isoformat()}'")
        return len(old)

    def before(self, today: date, days: List[date]) -> Optional[StoredKeys]:
        """Keys of the ids earlier batches wrote within the horizon (None if there are none)."""
        oldest = self.oldest_kept(today, days)
        if not [day for day in days if day >= oldest]:
            return None
        table = self.table.java()
        summary = table.currentSnapshot().summary() if table.currentSnapshot() is not None else {}
        stored_bytes = int(summary.get("total-files-size") or 0)
        keys = self.spark.table(self.table.name).where(F.col("arrival_date") >= F.lit(oldest)).select(*ID_KEY)
        return StoredKeys(keys, max(MIN_PARTITIONS, _ceil_div(stored_bytes, STORE_BYTES_PER_PARTITION)))

    def remember(self, gold: IcebergTable, gold_snapshot, today: date, properties: dict) -> None:
        """Append the keys of the ids one Gold commit added, in one commit tagged `properties`."""
        ids = gold.rows_added_by(gold_snapshot).select(*id_key(F.col("event_id")))
        keys = ids.select(*ID_KEY, F.lit(today).alias("arrival_date")).coalesce(1)
        self.table.append(keys, properties)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()
