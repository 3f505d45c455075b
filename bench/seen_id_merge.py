"""What merging the seen-id store's entries saves, in one session (docs/design.md, De-duplication).

    .venv/bin/python -m bench.seen_id_merge --entries 300,2880

For each count: one day of that many one-batch entries of 1,000 ids each (written directly as
Parquet, as `SeenIds.remember` leaves them), then a batch of 10,000 rows de-duplicated against
the store (best of three) before and after `SeenIds.merge`, and the merge itself. Then a
finished 5 GiB day (5 entries, 18 M ids) merged as the first batch of the next day does.
Ratios within one invocation are what count; the machine varies from run to run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from argparse import Namespace
from datetime import date, timedelta
from pathlib import Path

from iotpipe.sink_log import SEEN_IDS
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from iotpipe.lake.storage import LocalStorage
from spark.dedup import SeenIds, first_arrivals, id_key
from spark.job import configure

IDS_PER_ENTRY = 1_000
BATCH_ROWS = 10_000
TODAY = date(2026, 11, 28)


def store(spark: SparkSession, root: Path) -> SeenIds:
    return SeenIds(spark, LocalStorage(), str(root / "checkpoint"), str(root / "gold"), "7 days")


def write_entries(spark: SparkSession, root: Path, day: date, entries: int, ids_per_entry: int) -> None:
    """`entries` complete entries of `ids_per_entry` distinct ids each, under `day`."""
    keys = (
        spark.range(entries * ids_per_entry)
        .select((F.col("id") / ids_per_entry).cast("long").alias("batch"), *id_key(F.concat(F.lit("id"), F.col("id"))))
        .repartition(max(1, entries // 100), "batch")
    )
    folder = root / "checkpoint" / SEEN_IDS / f"arrival_date={day}"
    keys.write.partitionBy("batch").parquet(str(folder))  # batch=<n>/, as remember() names an entry
    for entry in folder.glob("batch=*"):
        (entry / "_SUCCESS").write_bytes(b"")


def small_batch_seconds(seen: SeenIds, batch, entries: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        first_arrivals(batch, seen.before(entries, TODAY, seen.listing()), BATCH_ROWS).count()
        best = min(best, time.perf_counter() - started)
    return best


def entries_case(spark: SparkSession, work: Path, entries: int) -> str:
    root = work / f"entries-{entries}"
    write_entries(spark, root, TODAY, entries, IDS_PER_ENTRY)
    seen = store(spark, root)
    ids = F.concat(F.lit("id"), (F.col("id") * 37).cast("string")).alias("event_id")
    stamp, source = F.current_timestamp().alias("event_time"), F.lit("f").alias("source_file")
    batch = spark.range(BATCH_ROWS).select(ids, stamp, source).cache()
    batch.count()
    small_batch_seconds(seen, batch, entries)  # warm-up
    before = small_batch_seconds(seen, batch, entries)
    started = time.perf_counter()
    merged = seen.merge(entries, TODAY)
    merge = time.perf_counter() - started
    after = small_batch_seconds(seen, batch, entries)
    batch.unpersist()
    return f"| {entries:,} | {before:.2f} s | {after:.2f} s | {merge:.2f} s ({merged:,} entries) |"


def day_case(spark: SparkSession, work: Path) -> str:
    root = work / "day"
    write_entries(spark, root, TODAY - timedelta(days=1), 5, 3_600_000)
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    started = time.perf_counter()
    merged = store(spark, root).merge(5, TODAY)
    seconds = time.perf_counter() - started
    return f"a finished day of {merged} entries, 18 M ids, {size / 2**20:.0f} MiB of keys: merged in {seconds:.1f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="300,2880", help="entry counts of the day, comma-separated")
    args = parser.parse_args(argv)
    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    configure(spark, Namespace(shuffle_partitions=4))
    work = Path(tempfile.mkdtemp(prefix="iotpipe-seen-id-merge-"))
    try:
        print("| entries in the day | small batch before the merge | after it | the merge (once) |")
        print("| ---: | ---: | ---: | ---: |")
        for entries in (int(n) for n in args.entries.split(",")):
            print(entries_case(spark, work, entries), flush=True)
        print(day_case(spark, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
