"""What table maintenance's rewrite of the seen-id store saves a batch, in one session.

    .venv/bin/python -m bench.seen_id_merge --entries 100,300

The seen-id store is an Iceberg table (`iotpipe.lake.tables.SEEN_IDS`, spark.dedup): each batch
appends its ids' keys in one commit of one file, and table maintenance (spark/maintain.py)
bin-packs a day's small files. For each count: one day of that many one-batch commits of 1,000
ids each (appended as `SeenIds.remember` appends them), then a batch of 10,000 rows de-duplicated
against the store (best of three) before and after maintenance's rewrite of the table's data
files, and the rewrite itself. Then a finished 5 GiB day (5 commits of 3.6 M ids, `--day-ids`)
rewritten the same way. Ratios within one invocation are what count; the machine varies from run
to run. The tables live in a local Iceberg catalog in a scratch folder, one database per case.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from argparse import Namespace
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from iotpipe.lake.tables import SEEN_IDS, TableLocations, local_catalog_uri
from iotpipe.local.jars import local_jars
from spark.dedup import SeenIds, first_arrivals, id_key, utc_today
from spark.job import configure
from spark.maintain import Maintenance
from spark.tables import ensure_tables, session_extensions

IDS_PER_ENTRY = 1_000
BATCH_ROWS = 10_000
HORIZON = "7 days"


def store(spark: SparkSession, root: Path, database: str) -> SeenIds:
    """A new seen-id store (with the job's other tables, which it creates together) in `database`."""
    tables = TableLocations(gold=str(root / "gold"), quarantine=str(root / "quarantine"), seen_ids=str(root / "seen"))
    ensure_tables(spark, database, tables, local=True)
    return SeenIds(spark, database, HORIZON)


def write_entries(spark: SparkSession, seen: SeenIds, entries: int, ids_per_entry: int) -> None:
    """`entries` commits of `ids_per_entry` distinct ids each, arrived today: what as many batches leave."""
    today = utc_today()
    for entry in range(entries):
        ids = spark.range(entry * ids_per_entry, (entry + 1) * ids_per_entry)
        keys = ids.select(
            *id_key(F.concat(F.lit("id"), F.col("id").cast("string"))), F.lit(today).alias("arrival_date")
        )
        seen.table.append(keys.coalesce(1), {})


def rewrite(spark: SparkSession, database: str) -> tuple[float, dict]:
    """Maintenance's rewrite of the seen-id store's data files (nothing else is due on a new
    table: no snapshot is old enough to expire, no orphan check): its seconds and its outcome."""
    maintenance = Maintenance(spark, Namespace(catalog_database=database, run_id="bench", fault=None), None, None)
    started = time.perf_counter()
    outcome = maintenance.table(SEEN_IDS, expire=False, keep_from_ms=0, orphans_due=False)
    return time.perf_counter() - started, outcome


def small_batch_seconds(seen: SeenIds, batch: DataFrame) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        today = utc_today()
        unique, _ = first_arrivals(batch, seen.before(today, seen.stored_days()), BATCH_ROWS)
        unique.count()
        best = min(best, time.perf_counter() - started)
    return best


def entries_case(spark: SparkSession, work: Path, entries: int) -> str:
    database = f"entries_{entries}"
    seen = store(spark, work / database, database)
    write_entries(spark, seen, entries, IDS_PER_ENTRY)
    ids = F.concat(F.lit("id"), (F.col("id") * 37).cast("string")).alias("event_id")
    stamp, source = F.current_timestamp().alias("event_time"), F.lit("f").alias("source_file")
    batch = spark.range(BATCH_ROWS).select(ids, stamp, source).cache()
    batch.count()
    small_batch_seconds(seen, batch)  # warm-up
    before = small_batch_seconds(seen, batch)
    seconds, outcome = rewrite(spark, database)
    after = small_batch_seconds(seen, batch)
    batch.unpersist()
    files = f"{outcome['files_before']:,} files into {outcome['files_after']:,}"
    return f"| {entries:,} | {before:.2f} s | {after:.2f} s | {seconds:.2f} s ({files}) |"


def day_case(spark: SparkSession, work: Path, ids_per_entry: int) -> str:
    database = "day"
    seen = store(spark, work / database, database)
    write_entries(spark, seen, 5, ids_per_entry)
    size = sum(p.stat().st_size for p in (work / database / "seen").rglob("*.parquet"))
    seconds, outcome = rewrite(spark, database)
    return (
        f"a finished day of 5 commits, {5 * ids_per_entry:,} ids, {size / 2**20:.0f} MiB of keys: "
        f"rewritten in {seconds:.1f} s ({outcome['files_rewritten']} files rewritten)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="100,300", help="commit counts of the day, comma-separated")
    parser.add_argument("--day-ids", type=int, default=3_600_000, help="ids per commit of the finished day")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="iotpipe-seen-id-merge-"))
    builder = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    builder = builder.config("spark.jars", ",".join(local_jars()))
    for key, value in session_extensions().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    catalog = Namespace(shuffle_partitions=4, fault=None, catalog=local_catalog_uri(str(work)), gold=str(work / "gold"))
    configure(spark, catalog)  # the job's session settings and its local catalog
    try:
        print("| commits in the day | small batch before the rewrite | after it | the rewrite (once) |")
        print("| ---: | ---: | ---: | ---: |")
        for entries in (int(n) for n in args.entries.split(",")):
            print(entries_case(spark, work, entries), flush=True)
        print(day_case(spark, work, args.day_ids))
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
