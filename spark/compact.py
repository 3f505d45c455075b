"""Gold compaction's Spark side: merge each partition's small files into one, swap them into the log.

Run with spark-submit after a run's VerifyGold, while the run holds the lease and no driver runs
(locally through `iotpipe compact`, on EMR as a step):

    spark-submit spark/compact.py --gold URI --checkpoint URI --run-id ID

What is merged and how the swap stays consistent for every reader: iotpipe.compaction. Spark
reads the small files of all the partitions to merge at once (their partition values from their
directories), shuffles them by partition and writes one file per partition into a staging folder,
from which each moves to its partition. The summary is written to
`<checkpoint>/compactions/<run id>.json`. Python 3.9 syntax; ends by returning from main.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import List

from pyspark.sql import SparkSession

from iotpipe.compaction import COMPACTION_FOLDER, Merge, compact, summary_uri
from iotpipe.sink_log import logged_uri, query_checkpoint, read_checkpoint
from iotpipe.storage import join, storage_for
from spark.heartbeat import LeaseLost
from spark.job import start_heartbeat

PARTITION_COLUMNS = ["date", "location_city"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Merge Gold's small files, one per partition")
    parser.add_argument("--gold", required=True, help="Gold sink URI")
    parser.add_argument("--checkpoint", required=True, help="the streaming job's checkpoint root")
    parser.add_argument("--run-id", required=True, help="the run this compaction follows")
    parser.add_argument("--region", default=None, help="AWS region of the job's own S3 calls on EMR")
    parser.add_argument("--lease", default=None, help="the checkpoint lease's store (as the streaming job's)")
    parser.add_argument("--lease-key", default="bronze-to-gold")
    parser.add_argument("--lease-holder", default=None, help="the run holding the lease")
    parser.add_argument("--lease-seconds", type=float, default=300.0)
    return parser


class SparkMerger:
    """Writes each merge's files into one Parquet file at its target, in one Spark job."""

    def __init__(self, spark: SparkSession, storage, sink: str) -> None:
        self.spark, self.storage, self.sink = spark, storage, sink

    def __call__(self, merges: List[Merge]) -> None:
        sources = [logged_uri(entry["path"], self.sink) for merge in merges for entry in merge.replaced]
        staging = join(self.sink, COMPACTION_FOLDER, "staging", uuid.uuid4().hex)
        # Partition values stay the strings their directories hold (no "00123" read as 123), so
        # they are written back as they were.
        inference = "spark.sql.sources.partitionColumnTypeInference.enabled"
        before = self.spark.conf.get(inference, "true")
        self.spark.conf.set(inference, "false")
        try:
            frame = self.spark.read.option("basePath", self.sink).parquet(*sources)
            frame.repartition(*PARTITION_COLUMNS).write.partitionBy(*PARTITION_COLUMNS).parquet(staging)
        finally:
            self.spark.conf.set(inference, before)
        written = {}
        for info in self.storage.list(staging + "/"):
            relative = info.uri[len(staging) + 1 :]
            if relative.endswith(".parquet") and "/" in relative:
                partition = relative.rsplit("/", 1)[0]
                if partition in written:
                    raise RuntimeError(f"Spark wrote two files for {partition} (one expected)")
                written[partition] = info.uri
        expected = {merge.partition for merge in merges}
        if set(written) != expected:
            raise RuntimeError(
                "the merged partitions are not the ones planned: "
                f"missing {sorted(expected - set(written))[:3]}, unexpected {sorted(set(written) - expected)[:3]}"
            )
        for merge in merges:
            self.storage.move(written[merge.partition], merge.target)
        for info in self.storage.list(staging + "/"):
            self.storage.delete(info.uri)


def configure(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.compression.codec", "snappy")


class LeaseCheckedStorage:
    """The storage the compaction writes through: each write first checks that the lease is still
    provably held (a driver of the next run waits out this one's claim before it writes, so a
    write made while the claim is proven cannot meet it)."""

    def __init__(self, storage, heartbeat) -> None:
        self.storage, self.heartbeat = storage, heartbeat

    def _check(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise LeaseLost(f"stopped compacting: {self.heartbeat.lost_reason}")

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._check()
        self.storage.write_bytes(uri, data)

    def move(self, source_uri: str, target_uri: str) -> None:
        self._check()
        self.storage.move(source_uri, target_uri)

    def delete(self, uri: str) -> None:
        self._check()
        self.storage.delete(uri)

    def __getattr__(self, name: str):
        return getattr(self.storage, name)


def run(spark: SparkSession, args: argparse.Namespace) -> dict:
    # A driver name of its own: a claim fences (and waits out) any other driver, even this run's.
    heartbeat = start_heartbeat(args, f"{args.run_id}-compaction-{uuid.uuid4().hex[:8]}", on_lost=lambda reason: None)
    try:
        storage = LeaseCheckedStorage(storage_for(args.gold, region=args.region), heartbeat)
        state = read_checkpoint(storage, query_checkpoint(args.checkpoint))
        if state.has_uncommitted_batch:
            outcome = {"skipped": f"batch {state.last_planned} is planned and not committed: the next run replays it"}
        else:
            merger = SparkMerger(spark, storage, args.gold)
            outcome = compact(storage, args.gold, state.last_committed, merger).to_json()
        outcome["run_id"] = args.run_id
        storage.write_bytes(summary_uri(args.checkpoint, args.run_id), json.dumps(outcome, sort_keys=True).encode())
    finally:
        if heartbeat:
            heartbeat.stop()
            heartbeat.end_claim()
    return outcome


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    spark = SparkSession.builder.appName("iotpipe-compact-gold").getOrCreate()
    configure(spark)
    outcome = run(spark, args)
    print("IOTPIPE_COMPACTION " + json.dumps(outcome, sort_keys=True), flush=True)
    return outcome


if __name__ == "__main__":
    main()
