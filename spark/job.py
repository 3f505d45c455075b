"""Entry point of the Bronze -> Gold streaming job: arguments, session, the query, summary.

Run with spark-submit (locally through `iotpipe transform`, on EMR as a step):

    spark-submit spark/job.py --bronze URI --gold URI --quarantine URI --checkpoint URI

One streaming query reads and parses each Bronze line once (checkpoint `<checkpoint>/transform`)
and writes each micro-batch to two sinks from foreachBatch: valid, de-duplicated rows to Gold
(spark.dedup: no streaming state), rejected rows with their reasons to the quarantine. Both are
Spark's file sink, whose `_spark_metadata` log, with the checkpoint, makes every batch
exactly-once; both get the query's batch ids. The run summary is written beside the checkpoint.
Python 3.9 syntax; ends by returning from main (never sys.exit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import uuid
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

from iotpipe.bronze import SPARK_GLOB, classify, write_note
from iotpipe.horizon import DEFAULT_HORIZON, horizon_argument
from iotpipe.sink_log import (
    SINKS,
    STREAMING_QUERY,
    batch_source_files,
    check_checkpoint_layout,
    logged_uri,
    query_checkpoint,
)
from iotpipe.storage import join, storage_for
from spark.dedup import SeenIds, first_arrivals, utc_today
from spark.heartbeat import LeaseHeartbeat, LeaseLost
from spark.progress import PROGRESS_SECONDS_CONF, TaskProgress, batches_in_progress, emit_line, task_counts
from spark.transforms import (
    REASON_CODES,
    cluster_by_partition,
    for_both_sinks,
    parse_lines,
    to_gold,
    to_quarantine,
    with_reasons,
)

FAULT_ENV = "IOTPIPE_FAULT"
FAULTS = (
    "crash-mid-batch",
    "fail-after-commit",
    "fail-at-start",
    "poison-batch",
    "lease-renewal-flaky",
    "lease-renewal-fails",
    "fail-between-sinks",
)
CRASH_PROTOCOL_CLASS = "iotpipe.faults.CrashingCommitProtocol"


class InjectedFailure(RuntimeError):
    """Raised on purpose by fault injection (after the last commit, or before the first batch)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="iotpipe Bronze -> Gold Spark Structured Streaming job")
    parser.add_argument("--bronze", required=True, help="Bronze JSON Lines prefix (path or s3:// URI)")
    parser.add_argument("--gold", required=True, help="Gold Parquet prefix")
    parser.add_argument("--quarantine", required=True, help="quarantine Parquet prefix")
    parser.add_argument("--checkpoint", required=True, help="checkpoint root; the run summary is written here too")
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
    parser.add_argument("--region", default=None, help="AWS region of the job's own S3 calls (the ledger) on EMR")
    parser.add_argument(
        "--fault",
        default=os.environ.get(FAULT_ENV),
        help=f"fault injection for tests: {', '.join(FAULTS)} (crash-mid-batch:N picks the batch, default 1)",
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
    # Every batch's sink-log file is a compact one, listing all files: the one file Gold
    # compaction rewrites to swap merged files in (iotpipe.compaction).
    spark.conf.set("spark.sql.streaming.fileSink.log.compactInterval", "1")
    # Only spark.dedup decides what is broadcast (small key sets): a whole batch's keys, broadcast
    # on a size estimate, could exhaust a small driver heap.
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    if spark.sparkContext.master.startswith("local"):
        # Each batch reads back the Gold files it committed, a few hundred named paths: Spark
        # lists more than 32 in a job of one task per path, 1.5 s of a 1 GiB batch on one
        # machine, where a few tasks of many paths each take a tenth of that. Session-wide (it
        # bounds every listing job); a cluster keeps Spark's default, one task per path, its
        # executors not known yet when the session starts.
        listing_tasks = 2 * spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism", str(listing_tasks))


# Spark's file source skips a file more than `maxFileAge` (default 7 days) older than the newest
# it has seen: a backfill copied with its original timestamps would never be read. Which files
# were read is already the source log's job, so the age filter is pushed out of reach.
MAX_FILE_AGE = "36500d"


def read_bronze(spark: SparkSession, bronze: str, max_files: int) -> DataFrame:
    """Bronze lines as a `value` column, from exactly the objects `iotpipe.bronze` calls readable."""
    return (
        spark.readStream.format("text")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", SPARK_GLOB)
        .option("maxFileAge", MAX_FILE_AGE)
        .option("ignoreCorruptFiles", "true")  # see check_objects
        .option("maxFilesPerTrigger", max_files)
        .load(bronze)
    )


# Objects the job does not read, or could not read in full, are noted under
# `<checkpoint>/ignored/` (count, by_reason, examples), for ReportStatus to report once.


def check_objects(spark: SparkSession, logged_paths: list) -> dict:
    """Which objects a batch took that the file system could not read in full, with why.

    The file source runs with `ignoreCorruptFiles`, so a poison object never fails a batch: Spark
    keeps the lines before the damage and skips the rest. To say which objects that happened to,
    the driver reads each through the same Hadoop file system the executors use: it opens it
    (a name Hadoop cannot handle fails there: 'unreadable') and, for a compressed object,
    decompresses it to the end inside the JVM ('corrupt-gzip' if the stream is cut short or
    damaged). Plain objects cost one open; compressed ones are read a second time.
    """
    from py4j.protocol import Py4JJavaError
    from pyspark.errors.exceptions.captured import CapturedException

    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    codecs = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
    problems = {}
    for logged in logged_paths:
        reason = "unreadable"
        try:
            path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(logged))
            stream = path.getFileSystem(conf).open(path)
            try:
                codec = codecs.getCodec(path)
                if codec is not None:
                    reason = "corrupt-gzip"
                    decompressed = codec.createInputStream(stream)
                    jvm.org.apache.hadoop.io.IOUtils.copyBytes(
                        decompressed, jvm.java.io.OutputStream.nullOutputStream(), 1 << 16, False
                    )
            finally:
                stream.close()
        except (Py4JJavaError, CapturedException):  # pyspark turns some Java exceptions into its own
            problems[logged] = reason
    return problems


IGNORED_NOTED = "ignored-noted.json"


def note_ignored_objects(storage, bronze: str, checkpoint: str, run_id: str) -> dict:
    """Note, once each, the objects under Bronze the job does not read (iotpipe.bronze: hidden,
    other formats), for the run report: every run sees them, whatever started it.

    Spark's file source lists all of Bronze on every trigger anyway; this is one more listing per
    attempt, on the driver. What was noted before is kept in `<checkpoint>/ignored-noted.json`.
    """
    _, ignored = classify((info.uri for info in storage.list(bronze.rstrip("/") + "/")), bronze)
    noted_uri = join(checkpoint, IGNORED_NOTED)
    noted = set(json.loads(storage.read_bytes(noted_uri))) if storage.stat(noted_uri) else set()
    new = {uri: reason for uri, reason in ignored.items() if uri not in noted}
    if new:
        write_note(storage, checkpoint, f"listing-{run_id}", new)
        storage.write_bytes(noted_uri, json.dumps(sorted(noted | set(new))).encode())
    return new


def note_unreadable(storage, checkpoint: str, bronze: str, name: str, problems: dict) -> None:
    """Note the objects a batch could not read in full (real paths, not URL-encoded) for the run report."""
    if problems:
        note = write_note(storage, checkpoint, name, {logged_uri(path, bronze): r for path, r in problems.items()})
        emit_line("IOTPIPE_UNREADABLE_OBJECTS " + json.dumps(note, sort_keys=True))


def file_sink(spark: SparkSession, path: str, partition_by: list):
    """Spark's own streaming Parquet sink (its `_spark_metadata` log; a batch id it already holds
    is skipped: exactly-once), written to from foreachBatch."""
    jvm = spark.sparkContext._jvm
    utils = jvm.org.apache.spark.api.python.PythonUtils
    columns = jvm.java.util.ArrayList()
    for name in partition_by:
        columns.add(name)
    return jvm.org.apache.spark.sql.execution.streaming.FileStreamSink(
        spark._jsparkSession,
        path,
        jvm.org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat(),
        utils.toSeq(columns),
        utils.toScalaMap(jvm.java.util.HashMap()),
    )


def reason_counts(batch: DataFrame) -> dict:
    """{reason code: rows} of a batch, valid rows under None."""
    return {row["reason"]: row["count"] for row in batch.groupBy("reason").count().collect()}


class BatchWriter:
    """The query's foreachBatch: one parse of the batch (kept in memory) feeds both sinks.

    Gold gets the first arrival of each id (spark.dedup), clustered so a batch writes at most
    one file per partition; the quarantine gets the rejected rows. Each goes through Spark's
    file sink with the query's batch id, then the batch's ids are remembered, all before the
    query commits the batch: a replay skips what a sink already holds. `observed[batch]` holds
    each sink's counts for the ledger.
    """

    def __init__(self, spark: SparkSession, args: argparse.Namespace, storage) -> None:
        self.args = args
        # Made before the query starts: a Spark without these classes fails before any batch is planned.
        self.sinks = {
            "gold": file_sink(spark, args.gold, ["date", "location_city"]),
            "quarantine": file_sink(spark, args.quarantine, ["reason"]),
        }
        self.seen = SeenIds(spark, storage, args.checkpoint, args.gold, args.dedup_horizon)
        self.observed: dict = {}
        fault, fault_batch = parse_fault(args.fault)
        self.fail_between_sinks_at = fault_batch if fault == "fail-between-sinks" else None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        today = utc_today()
        stored = self.seen.listing()
        self.seen.expire(today, stored)
        if self.seen.merge(batch_id, today, stored):
            stored = self.seen.listing()
        batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = reason_counts(batch)
            unique = first_arrivals(to_gold(batch), self.seen.before(batch_id, today, stored), counts.get(None, 0))
            self.sinks["gold"].addBatch(batch_id, cluster_by_partition(unique, self.args.shuffle_partitions)._jdf)
            if batch_id == self.fail_between_sinks_at:
                raise InjectedFailure(f"injected failure after batch {batch_id}'s Gold write, before the quarantine's")
            # repartition, not coalesce: coalesce(1) would pull the batch's rows into one task.
            self.sinks["quarantine"].addBatch(batch_id, to_quarantine(batch).repartition(1)._jdf)
        finally:
            batch.unpersist()
        gold_rows = self.seen.remember(batch_id, today)
        self.observed[batch_id] = {
            "gold": {"valid": {"rows": counts.get(None, 0)}, "gold": {"rows": gold_rows}},
            "quarantine": {"quarantine": {code: counts.get(code, 0) for code in REASON_CODES}},
        }


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


def progress_by_sink(progress: list, observed: dict) -> dict:
    """The query's batch progress as each sink's: the same batches, each with that sink's counts.
    A batch with no counts here (a replay whose sinks held it already) keeps none."""
    by_sink: dict = {sink: [] for sink in SINKS}
    for batch in progress:
        counts = observed.get(batch.get("batchId"), {})
        for sink in SINKS:
            by_sink[sink].append(dict(batch, observedMetrics=counts.get(sink, {})))
    return by_sink


def record_batches(ledger, query, observed: dict, on_recorded=None) -> None:
    """Record each committed micro-batch, as soon as it is seen.

    Writes `<checkpoint>/ledger/<sink>/<batch>.json` (input rows, counts and the files the batch
    committed to that sink, see iotpipe.ledger), so the counts of batches committed by an
    attempt that later crashed are not lost and no reader has to open a compact sink-log file;
    prints one progress line per sink and batch with input (read by `iotpipe transform`).
    """
    recent = query.recentProgress
    for sink, progress in progress_by_sink(recent, observed).items():
        for batch in progress:
            entry = ledger.record(sink, batch)
            if entry and on_recorded:
                on_recorded(entry)
            if entry and entry["input_rows"] > 0:
                line = {k: entry[k] for k in ("query", "batch", "input_rows", "observed", "ms")}
                emit_line("IOTPIPE_PROGRESS " + json.dumps(line, sort_keys=True))
    # Counts of batches Spark no longer reports are never read again (a long processing-time run).
    if recent:
        oldest = min(batch["batchId"] for batch in recent)
        for batch_id in [b for b in observed if b < oldest]:
            del observed[batch_id]


def open_ledger(args: argparse.Namespace):
    """The ledger writer, over the storage layer (local folders or S3), created before the query starts."""
    from iotpipe.ledger import LedgerWriter

    sinks = {"gold": args.gold, "quarantine": args.quarantine}
    return LedgerWriter(storage_for(args.checkpoint, region=args.region), args.checkpoint, sinks)


def summarise(progress: dict, run_id: str, started: float, args: argparse.Namespace) -> dict:
    """Add up this run's batches, per sink, into one summary."""
    gold_batches = [p for p in progress["gold"] if p.get("numInputRows", 0) > 0]
    quarantine_batches = [p for p in progress["quarantine"] if p.get("numInputRows", 0) > 0]

    def observed(batch: dict, name: str) -> dict:
        return batch.get("observedMetrics", {}).get(name, {}) or {}

    valid = sum(int(observed(b, "valid").get("rows", 0)) for b in gold_batches)
    gold = sum(int(observed(b, "gold").get("rows", 0)) for b in gold_batches)
    quarantined = {code: 0 for code in REASON_CODES}
    for batch in quarantine_batches:
        for code, count in observed(batch, "quarantine").items():
            quarantined[code] += int(count or 0)
    return {
        "run_id": run_id,
        "status": "SUCCEEDED",
        "bronze": args.bronze,
        "gold": args.gold,
        "quarantine": args.quarantine,
        "checkpoint": args.checkpoint,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
        "batches": len(gold_batches),
        "batch_ids": sorted({b["batchId"] for b in gold_batches}),
        "input_rows": sum(b["numInputRows"] for b in gold_batches),
        "quarantine_input_rows": sum(b["numInputRows"] for b in quarantine_batches),
        "gold_rows": gold,
        "quarantined_rows": sum(quarantined.values()),
        "quarantined_by_reason": {code: n for code, n in quarantined.items() if n},
        "duplicates": valid - gold,
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
    from iotpipe.lease import lease_store_for

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
    """Start the query, record each committed batch in the ledger, and return once it stopped."""
    ledger = open_ledger(args)  # reads the checkpoint only
    check_checkpoint_layout(ledger.storage, args.checkpoint, (args.gold, args.quarantine))
    note_ignored_objects(ledger.storage, args.bronze, args.checkpoint, run_id)
    validated = with_reasons(parse_lines(read_bronze(spark, args.bronze, args.max_files_per_trigger)))
    writer = BatchWriter(spark, args, ledger.storage)
    query = start_query(for_both_sinks(validated), writer, args.checkpoint, trigger_of(args.trigger))
    running.append(query)
    tracker = spark.sparkContext.statusTracker()
    interval = float(spark.conf.get(PROGRESS_SECONDS_CONF, "5"))
    progress = TaskProgress(
        lambda: task_counts(tracker), lambda: batches_in_progress({STREAMING_QUERY: query}), interval
    )
    progress.start()

    def check_batch(entry: dict) -> None:
        """Check the objects of each committed batch once (both sinks' entries name the same batch)."""
        if entry["query"] != "gold" or not entry["input_rows"]:
            return
        paths = batch_source_files(ledger.storage, query_checkpoint(args.checkpoint), entry["batch"])
        problems = check_objects(spark, paths)
        note_unreadable(ledger.storage, args.checkpoint, args.bronze, f"gold-{entry['batch']}", problems)

    if heartbeat and heartbeat.lost.is_set():  # lost while the query was starting
        query.stop()
    deadline = started + args.timeout_seconds if args.timeout_seconds else None
    try:
        while query.isActive:
            # awaitTermination raises a failed query's exception: it is raised below, once the
            # batches committed before the failure are recorded.
            with contextlib.suppress(StreamingQueryException):
                query.awaitTermination(0.5)
            record_batches(ledger, query, writer.observed, check_batch)
            if deadline and time.time() > deadline:
                query.stop()
    finally:
        progress.stop()
    record_batches(ledger, query, writer.observed, check_batch)
    if query.exception() is not None:
        raise query.exception()
    return query, writer.observed


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    """Run the query to completion (or timeout) and write the summary; return it."""
    fault, fault_batch = parse_fault(args.fault)
    started = time.time()
    run_id = args.run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    configure(spark, args)
    if fault == "fail-at-start":
        raise InjectedFailure("injected failure before any batch started")
    if fault == "crash-mid-batch":
        spark.conf.set("spark.sql.streaming.commitProtocolClass", CRASH_PROTOCOL_CLASS)
        spark.conf.set("spark.iotpipe.fault.crashBatch", str(fault_batch))
        # The crash models a driver killed mid-batch, not the separate case of a batch committed
        # but never recorded (tested on its own): it waits until the batches before are recorded.
        spark.conf.set("spark.iotpipe.fault.ledger", f"{args.checkpoint.rstrip('/')}/ledger")
    if fault == "poison-batch":
        spark.conf.set("spark.sql.streaming.commitProtocolClass", CRASH_PROTOCOL_CLASS)
        spark.conf.set("spark.iotpipe.fault.failBatch", str(fault_batch))

    running: list = []
    heartbeat = start_heartbeat(args, run_id, on_lost=lambda reason: [query.stop() for query in running], fault=fault)
    try:
        query, observed = run_query(spark, args, run_id, started, heartbeat, running)
    finally:
        for query in running:
            _stop_quietly(query)
        if heartbeat:
            heartbeat.stop()
            heartbeat.end_claim()
    if heartbeat and heartbeat.lost.is_set():
        raise LeaseLost(f"stopped writing: {heartbeat.lost_reason}")

    summary = summarise(progress_by_sink(query.recentProgress, observed), run_id, started, args)
    text = json.dumps(summary, indent=2, sort_keys=True)
    checkpoint = args.checkpoint.rstrip("/")
    write_text(spark, f"{checkpoint}/runs/{run_id}.json", text)
    write_text(spark, f"{checkpoint}/last_run.json", text)
    emit_line("IOTPIPE_RUN_SUMMARY " + json.dumps(summary, sort_keys=True))
    if fault == "fail-after-commit":
        raise InjectedFailure("injected failure after the last commit: the output is complete")
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    parse_fault(args.fault)
    spark = SparkSession.builder.appName("iotpipe-bronze-to-gold").getOrCreate()
    return run(spark, args)


if __name__ == "__main__":
    main()
