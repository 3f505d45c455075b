"""Entry point of the Bronze -> Gold streaming job: arguments, session, the query, summary.

Run with spark-submit (locally through `iotpipe transform`, on EMR as a step):

    spark-submit spark/job.py --bronze URI --gold URI --quarantine URI --checkpoint URI \
        --catalog glue|jdbc:sqlite:FILE --catalog-database NAME

One streaming query reads and parses each Bronze line once (checkpoint `<checkpoint>/transform`)
and hands each micro-batch to foreachBatch, which commits it to three Iceberg tables (spark.tables):
valid, de-duplicated rows to Gold (spark.dedup: no streaming state), rejected rows with their
reasons to the quarantine, then the keys of the ids Gold took to the seen-id store. Each commit is
tagged with the query's id and the batch id, and a replayed batch skips every table that holds its
tag already: with the checkpoint, every batch lands exactly once in every table. The run summary is
written beside the checkpoint. Python 3.9 syntax; ends by returning from main (never sys.exit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote

from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from iotpipe.lake.bronze import (
    CORRUPT_GZIP,
    GZIP_MAGIC,
    GZIP_WITHOUT_SUFFIX,
    SPARK_NAME_PATTERN,
    UNREADABLE,
    changed_after_read,
    classify,
    has_no_suffix,
    readable_name,
    spark_load_path,
    write_note,
)
from iotpipe.lake.checkpoint import (
    STREAMING_QUERY,
    CheckpointLayoutUnsupported,
    batch_source_files,
    check_lake_layout,
    has_started,
    logged_uri,
    query_checkpoint,
    query_id,
    read_times,
)
from iotpipe.lake.horizon import DEFAULT_HORIZON, horizon_argument
from iotpipe.lake.storage import join, storage_for
from iotpipe.lake.tables import DATABASE, GOLD, QUARANTINE, TableLocations, seen_ids_location
from iotpipe.lake.tags import (
    BATCH_ID,
    BATCH_STARTED_MS,
    DUPLICATES,
    EXECUTION,
    GOLD_SNAPSHOT,
    INPUT_ROWS,
    QUERY_ID,
    RUN_ID,
    VALID_ROWS,
)
from spark.dedup import SeenIds, first_arrivals, utc_today
from spark.heartbeat import LeaseHeartbeat, LeaseLost
from spark.progress import PROGRESS_SECONDS_CONF, TaskProgress, batches_in_progress, emit_line, task_counts
from spark.tables import IcebergTable, configure_catalog, ensure_tables, session_extensions, warehouse_of
from spark.transforms import for_both_sinks, parse_lines, to_gold, to_quarantine, with_reasons

FAULT_ENV = "IOTPIPE_FAULT"
# Where a crash fault halts the driver in its batch: around and inside each table's commit.
CRASH_POINTS = {
    "crash-before-gold": "before the Gold commit, nothing written",
    "crash-mid-batch": "inside the Gold commit: data files and manifests written, the commit not",
    "crash-after-gold": "after the Gold commit, before the quarantine's",
    "crash-inside-quarantine": "inside the quarantine commit",
    "crash-after-quarantine": "after the quarantine commit, before the seen-id store's",
    "crash-after-seen-ids": "after every table's commit, before the query commits the batch",
}
FAULTS = (
    *CRASH_POINTS,
    "fail-after-commit",
    "fail-at-start",
    "poison-batch",
    "lease-renewal-flaky",
    "lease-renewal-fails",
    "fail-between-sinks",
)
INSIDE_COMMIT = {"crash-mid-batch": GOLD.name, "crash-inside-quarantine": QUARANTINE.name}
CRASHING_FILE_IO = "iotpipe.faults.CrashingFileIO"
CRASH_ARMED_PROPERTY = "iotpipe.fault.crashInsideCommitOf"
HALT_STATUS = 137


class InjectedFailure(RuntimeError):
    """Raised on purpose by fault injection (after the last commit, or before the first batch)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="iotpipe Bronze -> Gold Spark Structured Streaming job")
    parser.add_argument("--bronze", required=True, help="Bronze JSON Lines prefix (path or s3:// URI)")
    parser.add_argument("--gold", required=True, help="the Gold table's location")
    parser.add_argument("--quarantine", required=True, help="the quarantine table's location")
    parser.add_argument("--checkpoint", required=True, help="checkpoint root; the run summary is written here too")
    parser.add_argument(
        "--catalog", default="glue", help="the tables' Iceberg catalog: 'glue' (AWS) or 'jdbc:sqlite:<file>' (local)"
    )
    parser.add_argument("--catalog-database", default=DATABASE, help="the catalog's database (namespace)")
    parser.add_argument(
        "--trigger",
        default="available-now",
        help="'available-now' (default) or an interval like '30 seconds'",
    )
    parser.add_argument("--max-files-per-trigger", type=int, default=8, help="input limit per micro-batch (objects)")
    parser.add_argument("--shuffle-partitions", type=int, default=4, help="frozen into the checkpoint on first run")
    parser.add_argument(
        "--dedup-horizon",
        default=DEFAULT_HORIZON,
        type=horizon_argument,
        help="how long (arrival time) an event_id is remembered: '<n> days', '<n> weeks' or '<n> hours'",
    )
    parser.add_argument("--run-id", default=None, help="names the run summary (default: time-based)")
    parser.add_argument("--timeout-seconds", type=float, default=None, help="stop a processing-time run after this")
    parser.add_argument(
        "--lease", default=None, help="lease store (dynamodb://table?region=r or a folder) to renew while running"
    )
    parser.add_argument("--lease-key", default="bronze-to-gold")
    parser.add_argument("--lease-holder", default=None, help="the execution holding the lease")
    parser.add_argument("--lease-seconds", type=float, default=300.0, help="each renewal extends the lease this long")
    parser.add_argument("--region", default=None, help="AWS region of the job's own S3 calls on EMR")
    parser.add_argument("--execution", default="", help="the Step Functions execution of the run (its report's key)")
    parser.add_argument(
        "--fault",
        default=os.environ.get(FAULT_ENV),
        help=f"fault injection for tests: {', '.join(FAULTS)} (':N' picks the batch, default 1)",
    )
    return parser


def parse_fault(text: str | None) -> tuple[str | None, int]:
    if not text:
        return None, -1
    name, _, batch = text.partition(":")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {text!r}; known: {', '.join(FAULTS)}")
    return name, int(batch) if batch else 1


def configure(spark: SparkSession, args: argparse.Namespace) -> None:
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
    spark.conf.set("spark.sql.legacy.timeParserPolicy", "CORRECTED")
    spark.conf.set("spark.sql.parquet.compression.codec", "snappy")
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "100000")
    # Only spark.dedup decides what is broadcast (small key sets): a whole batch's keys, broadcast
    # on a size estimate, could exhaust a small driver heap.
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    fault, _ = parse_fault(args.fault)
    configure_catalog(
        spark, args.catalog, warehouse_of(args.gold), CRASHING_FILE_IO if fault in INSIDE_COMMIT else None
    )


def table_locations(args: argparse.Namespace) -> TableLocations:
    def absolute(uri: str) -> str:
        return uri if "://" in uri else os.path.abspath(uri)

    return TableLocations(
        gold=absolute(args.gold),
        quarantine=absolute(args.quarantine),
        seen_ids=absolute(seen_ids_location(args.checkpoint)),
    )


# Spark's file source skips a file more than `maxFileAge` (default 7 days) older than the newest
# it has seen: a backfill copied with its original timestamps would never be read. Which files
# were read is already the source log's job, so the age filter is pushed out of reach.
MAX_FILE_AGE = "36500d"


def read_bronze(spark: SparkSession, bronze: str, max_files: int) -> DataFrame:
    """Bronze lines as a `value` column, from exactly the objects `iotpipe.lake.bronze` calls readable.

    The load path is a glob to Spark: its glob characters are escaped. The names are filtered on
    the file source's `_metadata.file_name`, which Spark applies to the file list before it opens
    a file (a glob filter cannot say "no suffix"); the source log still lists the others.
    """
    lines = (
        spark.readStream.format("text")
        .option("recursiveFileLookup", "true")
        .option("maxFileAge", MAX_FILE_AGE)
        .option("ignoreCorruptFiles", "true")  # see check_objects
        .option("maxFilesPerTrigger", max_files)
        .load(spark_load_path(bronze))
    )
    return lines.where(F.col("_metadata.file_name").rlike(SPARK_NAME_PATTERN))


# Objects the job does not read, or could not read in full, are noted under
# `<checkpoint>/ignored/` (count, by_reason, examples), for ReportStatus to report once.


def check_objects(spark: SparkSession, logged_paths: list) -> dict:
    """Which objects a batch took that the file system could not read in full, or read as text
    although their content is gzip, with why.

    The file source runs with `ignoreCorruptFiles`, so a poison object never fails a batch: Spark
    keeps the lines before the damage and skips the rest. To say which objects that happened to,
    the driver reads each through the same Hadoop file system the executors use: it opens it
    (a name Hadoop cannot handle fails there: 'unreadable') and, for a compressed object,
    decompresses it to the end inside the JVM ('corrupt-gzip' if the stream is cut short or
    damaged). Hadoop picks a codec by suffix only, so an object with no suffix that starts with
    gzip's magic bytes was read as text ('gzip-without-suffix': its lines are quarantined as
    malformed). Plain objects cost one open and two bytes; compressed ones are read a second time.
    """
    from py4j.protocol import Py4JJavaError
    from pyspark.errors.exceptions.captured import CapturedException

    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    codecs = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
    problems = {}
    for logged in logged_paths:
        reason = UNREADABLE
        try:
            path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(logged))
            stream = path.getFileSystem(conf).open(path)
            try:
                codec = codecs.getCodec(path)
                if codec is not None:
                    reason = CORRUPT_GZIP
                    decompressed = codec.createInputStream(stream)
                    jvm.org.apache.hadoop.io.IOUtils.copyBytes(
                        decompressed, jvm.java.io.OutputStream.nullOutputStream(), 1 << 16, False
                    )
                elif has_no_suffix(path.getName()) and bytes(stream.readNBytes(len(GZIP_MAGIC))) == GZIP_MAGIC:
                    problems[logged] = GZIP_WITHOUT_SUFFIX
            finally:
                stream.close()
        except (Py4JJavaError, CapturedException):  # pyspark turns some Java exceptions into its own
            problems[logged] = reason
    return problems


def objects_read(logged_paths: list) -> list:
    """The logged objects the job reads by name (the source log lists every object it listed)."""
    return [path for path in logged_paths if readable_name(unquote(path.rstrip("/").rsplit("/", 1)[-1]))]


IGNORED_NOTED = "ignored-noted.json"


def note_ignored_objects(storage, bronze: str, checkpoint: str, run_id: str) -> dict:
    """Note, once each, the objects under Bronze the job does not read (iotpipe.lake.bronze: hidden,
    other formats), and those rewritten since the file source took them, which it never reads
    again ('changed-after-read'), for the run report: every run sees them, whatever started it.

    Spark's file source lists all of Bronze on every trigger anyway, and reads its whole source log
    when the query starts; this is one more of each per attempt, on the driver. What was noted
    before is kept in `<checkpoint>/ignored-noted.json`.
    """
    listing = storage.list(bronze.rstrip("/") + "/")
    readable, ignored = classify((info.uri for info in listing), bronze)
    noted_uri = join(checkpoint, IGNORED_NOTED)
    noted = set(json.loads(storage.read_bytes(noted_uri))) if storage.stat(noted_uri) else set()
    new = {uri: reason for uri, reason in ignored.items() if uri not in noted}
    # A rewritten object is noted once per version: its key with the modification time it has now.
    read = set(readable)
    changed = changed_after_read(
        (info for info in listing if info.uri in read), read_times(storage, query_checkpoint(checkpoint), bronze)
    )
    versions = {info.uri: f"{info.uri}@{int(info.modified * 1000)}" for info in listing if info.uri in changed}
    new.update({uri: reason for uri, reason in changed.items() if versions[uri] not in noted})
    if new:
        write_note(storage, checkpoint, f"listing-{run_id}", new)
        storage.write_bytes(noted_uri, json.dumps(sorted(noted | {versions.get(u, u) for u in new})).encode())
    return new


def note_unreadable(storage, checkpoint: str, bronze: str, name: str, problems: dict) -> None:
    """Note the objects a batch could not read in full (real paths, not URL-encoded) for the run report."""
    if problems:
        note = write_note(storage, checkpoint, name, {logged_uri(path, bronze): r for path, r in problems.items()})
        emit_line("IOTPIPE_UNREADABLE_OBJECTS " + json.dumps(note, sort_keys=True))


def reason_counts(batch: DataFrame) -> dict:
    """{reason code: rows} of a batch, valid rows under None."""
    return {row["reason"]: row["count"] for row in batch.groupBy("reason").count().collect()}


def halt_driver(spark: SparkSession, where: str) -> None:
    """Fault injection: stop the driver's JVM at once, as a killed driver stops (no clean-up)."""
    emit_line(f"IOTPIPE_FAULT halting the driver {where}")
    spark.sparkContext._jvm.java.lang.Runtime.getRuntime().halt(HALT_STATUS)


class BatchWriter:
    """The query's foreachBatch: one parse of the batch (kept in memory) feeds every table.

    In order, each only if the table has no commit of this batch yet: Gold gets the first arrival
    of each id (spark.dedup), the quarantine the rejected rows, the seen-id store the keys of the
    ids that Gold commit added. Every commit is tagged with the query and the batch and carries the
    batch's counts: input rows (both tables) and, on Gold's, valid rows and the duplicates dropped,
    counted where they were dropped. `committed[batch]` holds what each table committed, for the
    progress lines and the run summary.
    """

    def __init__(self, spark: SparkSession, args: argparse.Namespace, storage) -> None:
        self.spark, self.storage, self.checkpoint = spark, storage, args.checkpoint
        self.database, self.horizon = args.catalog_database, args.dedup_horizon
        self.bind(spark)
        self.locations = table_locations(args)
        self.committed: dict = {}
        self.fault, self.fault_batch = parse_fault(args.fault)
        self._query_id = None
        # The run a batch belongs to, for its report: the one whose attempt commits it last (its
        # seen-id commit), so a batch a run left half done belongs to the run that finishes it.
        self.owner = {RUN_ID: args.lease_holder or args.run_id, EXECUTION: args.execution}

    def bind(self, spark: SparkSession) -> None:
        """Work through `spark`'s catalog. A streaming query runs its batches in a session of its
        own, with its own catalog: every commit and look-up of a batch goes through that one."""
        self.spark = spark
        self.gold = IcebergTable(spark, self.database, GOLD)
        self.quarantine = IcebergTable(spark, self.database, QUARANTINE)
        self.seen = SeenIds(spark, self.database, self.horizon)

    def query_id(self) -> str:
        """The query's id, from its checkpoint (written when the query starts, before any batch)."""
        if self._query_id is None:
            self._query_id = query_id(self.storage, self.checkpoint)
        return self._query_id

    def _fault_at(self, point: str, batch_id: int) -> None:
        if self.fault == point and batch_id == self.fault_batch:
            if point == "fail-between-sinks":
                raise InjectedFailure(f"injected failure after batch {batch_id}'s Gold commit, before the quarantine's")
            if point == "poison-batch":
                raise InjectedFailure(f"injected: batch {batch_id} fails on every attempt (a poison batch)")
            halt_driver(self.spark, f"in batch {batch_id}: {CRASH_POINTS[point]}")

    def _arm_inside_commit(self, table: str, batch_id: int) -> None:
        """Arm the test FileIO to halt inside `table`'s next commit (fault crash-mid-batch)."""
        if INSIDE_COMMIT.get(self.fault or "") == table and batch_id == self.fault_batch:
            location = getattr(self.locations, table)
            self.spark.sparkContext._jvm.java.lang.System.setProperty(CRASH_ARMED_PROPERTY, location.rstrip("/"))

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started_ms = int(time.time() * 1000)
        if batch.sparkSession is not self.spark:
            self.bind(batch.sparkSession)
        query = self.query_id()
        tags = {QUERY_ID: query, BATCH_ID: str(batch_id)}
        gold_commit = self.gold.committed(query, batch_id)
        quarantine_done = self.quarantine.committed(query, batch_id) is not None
        seen_done = self.seen.table.committed(query, batch_id) is not None
        self._fault_at("poison-batch", batch_id)
        today = utc_today()
        if gold_commit is None or not quarantine_done:
            batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                counts = reason_counts(batch)
                batch_tags = {**tags, INPUT_ROWS: str(sum(counts.values())), BATCH_STARTED_MS: str(started_ms)}
                if gold_commit is None:
                    gold_commit = self._commit_gold(batch, batch_id, counts, batch_tags, today)
                if not quarantine_done:
                    self._fault_at("fail-between-sinks", batch_id)
                    self._arm_inside_commit(QUARANTINE.name, batch_id)
                    taken = datetime.fromtimestamp(started_ms / 1000, timezone.utc)
                    self.quarantine.append(to_quarantine(batch, taken), batch_tags)
                    self._fault_at("crash-after-quarantine", batch_id)
            finally:
                batch.unpersist()
        if not seen_done:
            owner = {**tags, **self.owner, GOLD_SNAPSHOT: str(gold_commit.snapshotId())}
            self.seen.remember(self.gold, gold_commit, today, owner)
            self._fault_at("crash-after-seen-ids", batch_id)
        self.committed[batch_id] = self._what_committed(query, batch_id)

    def _commit_gold(self, batch: DataFrame, batch_id: int, counts: dict, batch_tags: dict, today):
        """De-duplicate the batch's valid rows and commit them to Gold; return the Gold commit."""
        days = self.seen.stored_days()
        if self.seen.expire(today, days):
            days = self.seen.stored_days()
        valid = counts.get(None, 0)
        unique, dropped = first_arrivals(to_gold(batch), self.seen.before(today, days), valid)
        self._fault_at("crash-before-gold", batch_id)
        self._arm_inside_commit(GOLD.name, batch_id)
        self.gold.append(unique, {**batch_tags, VALID_ROWS: str(valid), DUPLICATES: str(dropped.total)})
        self._fault_at("crash-after-gold", batch_id)
        return self.gold.committed(batch_tags[QUERY_ID], batch_id)

    def _what_committed(self, query: str, batch_id: int) -> dict:
        """The batch's counts as its commits record them (a replay reports what the first attempt committed)."""
        gold = self.gold.committed(query, batch_id).summary()
        quarantine = self.quarantine.committed(query, batch_id).summary()
        return {
            "input": int(gold.get(INPUT_ROWS) or 0),
            "gold": int(gold.get("added-records") or 0),
            "quarantined": int(quarantine.get("added-records") or 0),
            "duplicates": int(gold.get(DUPLICATES) or 0),
        }


def check_tables_belong_to_the_checkpoint(writer: BatchWriter, storage, checkpoint: str) -> None:
    """A query checkpoint that is gone while the tables hold batches is refused: a new query numbers
    its batches from 0 again and reads all of Bronze, and the seen-id store would take its rows for
    duplicates of the ones Gold holds."""
    if has_started(storage, checkpoint):
        return
    holding = [t.name for t in (writer.gold, writer.quarantine, writer.seen.table) if t.has_tagged_commits()]
    if holding:
        raise CheckpointLayoutUnsupported(
            f"{', '.join(holding)} hold batches but the checkpoint {checkpoint} has none: a new query would read "
            "Bronze again from the start. Restore the checkpoint, or drop the tables (and move their folders "
            "aside) so the job rebuilds them from Bronze"
        )


def start_query(frame: DataFrame, writer: BatchWriter, checkpoint: str, trigger: dict):
    return (
        frame.writeStream.queryName(STREAMING_QUERY)
        .foreachBatch(writer)
        .option("checkpointLocation", query_checkpoint(checkpoint))
        .trigger(**trigger)
        .start()
    )


def trigger_of(text: str) -> dict:
    return {"availableNow": True} if text == "available-now" else {"processingTime": text}


class CommittedBatches:
    """Each batch the query committed, seen once: the objects it read are checked, a progress line
    says what every table took, and its counts go into the run summary."""

    def __init__(self, storage, checkpoint: str, on_committed) -> None:
        self.storage, self.checkpoint, self.on_committed = storage, checkpoint, on_committed
        self.seen: dict = {}

    def record(self, query, writer: BatchWriter) -> None:
        for progress in query.recentProgress:
            batch = progress.get("batchId")
            if batch in self.seen or batch not in writer.committed:
                continue
            if self.storage.stat(join(query_checkpoint(self.checkpoint), "commits", str(batch))) is None:
                continue  # its commit is not written yet
            counts = writer.committed[batch]
            ms = (progress.get("durationMs") or {}).get("triggerExecution")
            self.seen[batch] = {"batch": batch, **counts, "ms": ms}
            if counts["input"] > 0:
                self.on_committed(batch)
                emit_line("IOTPIPE_PROGRESS " + json.dumps(self.seen[batch], sort_keys=True))
        # Counts of batches Spark no longer reports are never read again (a long processing-time run).
        if query.recentProgress:
            oldest = min(progress["batchId"] for progress in query.recentProgress)
            for batch in [b for b in writer.committed if b < oldest]:
                del writer.committed[batch]


def summarise(batches: dict, run_id: str, started: float, args: argparse.Namespace) -> dict:
    """Add up this run's batches (as their commits record them) into one summary."""
    with_input = [b for b in batches.values() if b["input"] > 0]
    return {
        "run_id": run_id,
        "status": "SUCCEEDED",
        "bronze": args.bronze,
        "gold": args.gold,
        "quarantine": args.quarantine,
        "checkpoint": args.checkpoint,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
        "batches": len(with_input),
        "batch_ids": sorted(b["batch"] for b in with_input),
        "input_rows": sum(b["input"] for b in with_input),
        "gold_rows": sum(b["gold"] for b in with_input),
        "quarantined_rows": sum(b["quarantined"] for b in with_input),
        "duplicates": sum(b["duplicates"] for b in with_input),
    }


class UnreliableLeaseStore:
    """Fault injection: the job's renewals raise (once, or always) as a throttled or unreachable
    DynamoDB would; the run's Lambdas still reach the store."""

    def __init__(self, store, failures: float) -> None:
        self.store, self.failures = store, failures

    def renew_driver(self, *args, **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("injected: the lease store cannot be reached")
        return self.store.renew_driver(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def start_heartbeat(args: argparse.Namespace, run_id: str, on_lost, fault: str | None = None) -> LeaseHeartbeat | None:
    """Claim the lease for this attempt and prove it held before any query starts, then keep
    renewing it in the background."""
    if not args.lease:
        return None
    from iotpipe.run.lease_store import lease_store_for

    store = lease_store_for(args.lease)
    if fault in ("lease-renewal-flaky", "lease-renewal-fails"):
        store = UnreliableLeaseStore(store, 1 if fault == "lease-renewal-flaky" else float("inf"))
    heartbeat = LeaseHeartbeat(
        store, args.lease_key, args.lease_holder, args.lease_seconds, on_lost=on_lost,
        driver=run_id,
    )  # fmt: skip
    heartbeat.prove_held()
    if heartbeat.waited_for_previous:
        emit_line(f"IOTPIPE_WAITED_FOR_PREVIOUS_DRIVER {heartbeat.waited_for_previous:.0f}")
    heartbeat.start()
    return heartbeat


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small text file through Hadoop's FileSystem, so s3:// (EMRFS) and local paths both work."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def _stop_quietly(query) -> None:
    try:
        if query.isActive:
            query.stop()
    except Exception:  # the JVM may be gone (a crashed driver): nothing is writing any more
        pass


def run_query(spark: SparkSession, args: argparse.Namespace, run_id: str, started: float, heartbeat, running: list):
    """Create the tables if needed, start the query, follow its committed batches, return once it stopped."""
    storage = storage_for(args.checkpoint, region=args.region)
    check_lake_layout(storage, args.checkpoint, args.gold, args.quarantine)
    ensure_tables(spark, args.catalog_database, table_locations(args), local=args.catalog != "glue")
    writer = BatchWriter(spark, args, storage)
    check_tables_belong_to_the_checkpoint(writer, storage, args.checkpoint)
    note_ignored_objects(storage, args.bronze, args.checkpoint, run_id)
    validated = with_reasons(parse_lines(read_bronze(spark, args.bronze, args.max_files_per_trigger)))
    query = start_query(for_both_sinks(validated), writer, args.checkpoint, trigger_of(args.trigger))
    running.append(query)
    tracker = spark.sparkContext.statusTracker()
    interval = float(spark.conf.get(PROGRESS_SECONDS_CONF, "5"))
    progress = TaskProgress(
        lambda: task_counts(tracker), lambda: batches_in_progress({STREAMING_QUERY: query}), interval
    )
    progress.start()

    def check_batch(batch: int) -> None:
        """Check the objects of each committed batch once."""
        paths = objects_read(batch_source_files(storage, query_checkpoint(args.checkpoint), batch))
        note_unreadable(storage, args.checkpoint, args.bronze, f"batch-{batch}", check_objects(spark, paths))

    committed = CommittedBatches(storage, args.checkpoint, check_batch)
    if heartbeat and heartbeat.lost.is_set():  # lost while the query was starting
        query.stop()
    deadline = started + args.timeout_seconds if args.timeout_seconds else None
    try:
        while query.isActive:
            # awaitTermination raises a failed query's exception: it is raised below, once the
            # batches committed before the failure are followed up.
            with contextlib.suppress(StreamingQueryException):
                query.awaitTermination(0.5)
            committed.record(query, writer)
            if deadline and time.time() > deadline:
                query.stop()
    finally:
        progress.stop()
    committed.record(query, writer)
    if query.exception() is not None:
        raise query.exception()
    return committed.seen


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    """Run the query to completion (or timeout) and write the summary; return it."""
    fault, _ = parse_fault(args.fault)
    started = time.time()
    run_id = args.run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    args.run_id = run_id
    configure(spark, args)
    if fault == "fail-at-start":
        raise InjectedFailure("injected failure before any batch started")

    running: list = []
    heartbeat = start_heartbeat(args, run_id, on_lost=lambda reason: [query.stop() for query in running], fault=fault)
    try:
        batches = run_query(spark, args, run_id, started, heartbeat, running)
    finally:
        for query in running:
            _stop_quietly(query)
        if heartbeat:
            heartbeat.stop()
            heartbeat.end_claim()
    if heartbeat and heartbeat.lost.is_set():
        raise LeaseLost(f"stopped writing: {heartbeat.lost_reason}")

    summary = summarise(batches, run_id, started, args)
    text = json.dumps(summary, indent=2, sort_keys=True)
    checkpoint = args.checkpoint.rstrip("/")
    write_text(spark, f"{checkpoint}/runs/{run_id}.json", text)
    write_text(spark, f"{checkpoint}/last_run.json", text)
    emit_line("IOTPIPE_RUN_SUMMARY " + json.dumps(summary, sort_keys=True))
    if fault == "fail-after-commit":
        raise InjectedFailure("injected failure after the last commit: the output is complete")
    return summary


def session(app_name: str) -> SparkSession:
    """The job's SparkSession, with Iceberg's SQL extensions (table maintenance's procedures)."""
    builder = SparkSession.builder.appName(app_name)
    for key, value in session_extensions().items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    parse_fault(args.fault)
    return run(session("iotpipe-bronze-to-gold"), args)


if __name__ == "__main__":
    main()
