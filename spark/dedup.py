"""Exactly-once de-duplication of Gold rows without streaming state.

Each Gold micro-batch keeps the first arrival of every `event_id`:

1. within the batch, one row per id (a batch's rows arrive together; the copy with the
   earliest event time is kept);
2. across batches, the rows whose id an earlier batch already wrote to Gold are dropped, by an
   anti-join against the *seen-id store*: per batch, the 128-bit key of every id it wrote,
   under `<checkpoint>/seen-ids/arrival_date=<day>/batch=<n>/`.

The store is written after the batch's Gold files are committed, from those files, and
before the query commits the batch; a replay of the batch rewrites its own entry and never
checks against it, so a crash anywhere leaves it consistent with Gold. Expiry deletes whole
arrival days (UTC days on which batches ran) older than the horizon, keeping at least the last
horizon + 1 days with batches: nothing scans remembered ids to evict them (Spark 3.5's
`dropDuplicatesWithinWatermark` scanned its whole RocksDB state on every batch). A batch reads
only the two key columns of the days in the horizon: 16 bytes per remembered id.

Entries are merged so that a batch opens few of them however often batches run (a trigger
every 30 s makes 2,880 entries a day): a finished day's entries become one, and within a day,
more than FANOUT entries of one level become one entry of the next level (as a log-structured
merge tree does), so a batch reads at most FANOUT + 1 entries of a level per day. Only entries of committed
batches are merged (those before the batch being written), into a new folder that counts only
once complete; the entries it replaces are deleted after, each losing its `_SUCCESS` first. A
crash in between leaves a key in two entries, which a membership test does not mind, and files
without `_SUCCESS`, which are no entry and go with their day.

The key is two independent 64-bit xxhash values of the id: the chance that two of a
billion distinct ids share both is about 1e-21, far below any hardware error rate, and
the comparison is of longs, not of strings.

Python 3.9 syntax (EMR 7's interpreter).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import List, Optional

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from iotpipe.horizon import horizon_days
from iotpipe.sink_log import SEEN_IDS, BatchFiles, logged_uri
from iotpipe.storage import Storage, join

ID_KEY = ("id_key_a", "id_key_b")
# Matched on a path relative to the store's root (the root itself may hold anything).
_DAY = re.compile(r"^arrival_date=(\d{4}-\d{2}-\d{2})/")
# A file directly in an entry's folder (not in a writer's `_temporary/`): a batch's own entry
# (`batch=<n>`) or a merged one (`merged=<level>-<last batch>-<token>`).
_ENTRY_FILE = re.compile(r"^arrival_date=(\d{4}-\d{2}-\d{2})/(batch=(-?\d+)|merged=(\d+)-(-?\d+)-[0-9a-f]+)/([^/]+)$")
_COMPLETE = "_SUCCESS"
KEY_SCHEMA = "id_key_a long, id_key_b long"
# More entries than this of one level in a day are merged into one of the next level.
FANOUT = 8
MERGED_FILE_BYTES = 64 * 2**20


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
class Entry:
    """One entry of the store: a folder of keys of one arrival day, up to `batch` (its own batch,
    or the last batch of the entries merged into it) at merge `level` (0: a batch's own)."""

    day: date
    folder: str
    batch: int
    level: int


@dataclass(frozen=True)
class StoredKeys:
    """Keys the store holds for earlier batches, and how many partitions a shuffle of them takes
    (about 16 MiB of the store's files each, so a task's share does not grow with the store)."""

    keys: DataFrame
    partitions: int


def first_arrivals(rows: DataFrame, seen: Optional[StoredKeys], rows_in_batch: int) -> DataFrame:
    """One row per id, without the ids in `seen` (keys of earlier batches).

    Meant for a cached batch: the keys are read from it first, to find the few ids that need
    anything done (repeated within the batch, or seen before); every other row passes through
    two probes of a broadcast set, and no wide row is shuffled for de-duplication.
    """
    keyed = rows.select("*", *id_key(F.col("event_id")))
    keys = keyed.select(*ID_KEY)
    if seen is not None:
        known = _small(_written_before(seen, keys, rows_in_batch).distinct())
        keyed = keyed.join(known, list(ID_KEY), "left_anti")
        keys = keyed.select(*ID_KEY)
    repeated = _small(keys.groupBy(*ID_KEY).count().where(F.col("count") > 1).select(*ID_KEY))
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
    return once.unionByName(first_of_repeated).drop(*ID_KEY)


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


def _small(keys: DataFrame) -> DataFrame:
    """`keys` computed once (eagerly), and marked for broadcast if small enough."""
    keys = keys.localCheckpoint()
    return F.broadcast(keys) if keys.count() <= BROADCAST_KEYS else keys


class SeenIds:
    """The seen-id store of one Gold sink: which batch wrote which ids, by arrival day."""

    def __init__(self, spark: SparkSession, storage: Storage, checkpoint_uri: str, gold_uri: str, horizon: str):
        self.spark, self.storage = spark, storage
        self.root = join(checkpoint_uri, SEEN_IDS)
        self.gold = BatchFiles(storage, gold_uri)
        self.days = horizon_days(horizon)

    def listing(self) -> list:
        """The store's files; one listing serves a batch's `expire` and `before`."""
        return list(self.storage.list(self.root + "/"))

    @staticmethod
    def _relative(uri: str) -> str:
        """A listed file's path below the store's root. The storage layer lists in its own spelling
        (`./ck` as an absolute path, `s3a://` as `s3://`), so the root is found by its name."""
        marker = f"/{SEEN_IDS}/"
        return uri.rsplit(marker, 1)[1] if marker in uri else ""

    def oldest_kept(self, today: date, listing: list) -> date:
        """The oldest arrival day the store still answers for: `horizon` days before today, or
        earlier if the job did not run on each of those days. The entries of the last horizon + 1
        days on which batches ran are kept, so a pause longer than the horizon forgets nothing
        (a copy processed after the pause is still compared with the ids before it)."""
        days = {date.fromisoformat(m.group(1)) for m in (_DAY.search(self._relative(i.uri)) for i in listing) if m}
        ran = sorted(days | {today})
        return min(today - timedelta(days=self.days), ran[-(self.days + 1)] if len(ran) > self.days else ran[0])

    def _entries(self, listing: list) -> dict:
        """{Entry: [listed parquet files]} of every complete entry in the store: a write the
        driver did not finish (no `_SUCCESS`, files left in `_temporary/`) is not an entry; its
        replay (or the next merge) writes the entry again."""
        files: dict = {}
        complete = set()
        for info in listing:
            match = _ENTRY_FILE.search(self._relative(info.uri))
            if not match:
                continue
            own = match.group(3) is not None
            batch, level = (int(match.group(3)), 0) if own else (int(match.group(5)), int(match.group(4)))
            entry = Entry(date.fromisoformat(match.group(1)), match.group(2), batch, level)
            name = match.group(6)
            if name == _COMPLETE:
                complete.add(entry)
            elif name.endswith(".parquet") and not name.startswith(("_", ".")):
                files.setdefault(entry, []).append(info)
        return {entry: infos for entry, infos in files.items() if entry in complete}

    def before(self, batch: int, today: date, listing: Optional[list] = None) -> Optional[StoredKeys]:
        """Keys of the ids batches before `batch` wrote within the horizon (None if there are none)."""
        listing = self.listing() if listing is None else listing
        oldest = self.oldest_kept(today, listing)
        entries = self._entries(listing)
        files = [info for e, infos in entries.items() if e.batch < batch and e.day >= oldest for info in infos]
        if not files:
            return None
        keys = self.spark.read.schema(KEY_SCHEMA).parquet(*[info.uri for info in files])
        stored_bytes = sum(info.size for info in files)
        return StoredKeys(keys, max(MIN_PARTITIONS, _ceil_div(stored_bytes, STORE_BYTES_PER_PARTITION)))

    def merge(self, batch: int, today: date, listing: Optional[list] = None) -> int:
        """Merge the entries of batches before `batch`: each finished day's into one, and more
        than FANOUT of one level in a day into one of the next level. Return the entries merged
        (0: the listing still holds)."""
        listing = self.listing() if listing is None else listing
        oldest = self.oldest_kept(today, listing)  # older days are expired, not merged
        by_day: dict = {}
        for entry, infos in self._entries(listing).items():
            if entry.batch < batch and entry.day >= oldest:
                by_day.setdefault(entry.day, {})[entry] = infos
        groups = []
        for day, entries in sorted(by_day.items()):
            if day < today:
                groups += [entries] if len(entries) > 1 else []
                continue
            for level in sorted({e.level for e in entries}):
                same = {e: infos for e, infos in entries.items() if e.level == level}
                groups += [same] if len(same) > FANOUT else []
        for group in groups:
            self._merge_into_one(group, listing)
        return sum(len(group) for group in groups)

    def _merge_into_one(self, entries: dict, listing: list) -> None:
        day = next(iter(entries)).day
        level = 1 + max(e.level for e in entries)
        last = max(e.batch for e in entries)
        folder = join(self.root, f"arrival_date={day.isoformat()}")
        target = join(folder, f"merged={level}-{last}-{uuid.uuid4().hex[:12]}")
        files = [info for infos in entries.values() for info in infos]
        keys = self.spark.read.schema(KEY_SCHEMA).parquet(*[info.uri for info in files])
        # A finished 5 GiB day is some 300 MB of keys: written in several files, read by several tasks.
        keys.coalesce(max(1, _ceil_div(sum(info.size for info in files), MERGED_FILE_BYTES))).write.parquet(target)
        for entry in sorted(entries, key=lambda e: e.folder):
            self.storage.delete(join(folder, entry.folder, _COMPLETE))  # first: what is left is no entry
        replaced = {f"arrival_date={day.isoformat()}/{entry.folder}" for entry in entries}
        for info in listing:  # their keys and whatever their writers left beside them (checksums)
            relative = self._relative(info.uri)
            if "/".join(relative.split("/", 2)[:2]) in replaced and not relative.endswith(f"/{_COMPLETE}"):
                self.storage.delete(info.uri)

    def remember(self, batch: int, today: date) -> int:
        """Record the ids of the Gold files `batch` committed; return how many rows it wrote."""
        files = [logged_uri(path, self.gold.sink_uri) for path, _ in self.gold.files(batch) or []]
        if not files:
            return 0
        target = join(self.root, f"arrival_date={today.isoformat()}", f"batch={batch}")
        ids = self.spark.read.schema("event_id string").parquet(*files).select(*id_key(F.col("event_id")))
        ids.coalesce(1).write.mode("overwrite").parquet(target)
        return self.spark.read.parquet(target).count()

    def expire(self, today: date, listing: Optional[list] = None) -> int:
        """Delete the arrival days older than `oldest_kept` (whole days); return the files deleted."""
        listing = self.listing() if listing is None else listing
        oldest = self.oldest_kept(today, listing)
        deleted = 0
        for info in listing:
            match = _DAY.search(self._relative(info.uri))
            if match and date.fromisoformat(match.group(1)) < oldest:
                self.storage.delete(info.uri)
                deleted += 1
        return deleted


def utc_today() -> date:
    return datetime.now(timezone.utc).date()
