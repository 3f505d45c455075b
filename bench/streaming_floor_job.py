"""Streaming floor for the benchmark: the Spark floor cut into the micro-batches our job runs.

The same streaming read of Bronze as our job (`spark.job.read_bronze`, the same objects per
batch), our parse and cleaning, and each batch's valid rows written to Gold with at most one
file per partition: no de-duplication, no quarantine, no kept batch, no exactly-once sink
(a plain append). What cutting the input into batches of `--max-files-per-trigger` objects
costs any Spark job, before anything our job adds. Once the query ends, each batch that read
rows is printed as our job prints it (`IOTPIPE_PROGRESS {"batch", "input", "ms"}`, the batch's
`triggerExecution` time), for the bench to compare batch times. Reference only.
"""

from __future__ import annotations

import argparse
import json

from pyspark.sql import DataFrame, SparkSession

from iotpipe.lake.tables import local_catalog_uri
from iotpipe.run.spark_args import SparkJobArgs
from spark.job import configure, read_bronze
from spark.transforms import cluster_by_partition, parse_lines, to_gold, with_reasons

SHUFFLE_PARTITIONS = SparkJobArgs.shuffle_partitions
PROGRESS_PREFIX = "IOTPIPE_PROGRESS "


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bronze")
    parser.add_argument("out")
    parser.add_argument("--max-files-per-trigger", type=int, default=SparkJobArgs.max_files_per_trigger)
    args = parser.parse_args(argv)
    spark = SparkSession.builder.appName("iotpipe-streaming-floor").getOrCreate()
    # Our job's session settings, its Iceberg catalog (never used here: Gold is plain Parquet) beside the output.
    scratch = f"{args.out}/unused-catalog"
    configure(spark, argparse.Namespace(shuffle_partitions=SHUFFLE_PARTITIONS, fault=None,
                                        catalog=local_catalog_uri(scratch), gold=f"{scratch}/gold"))  # fmt: skip

    def write_gold(batch: DataFrame, batch_id: int) -> None:
        gold = cluster_by_partition(to_gold(batch), SHUFFLE_PARTITIONS)
        gold.write.mode("append").partitionBy("date", "location_city").parquet(f"{args.out}/gold")

    validated = with_reasons(parse_lines(read_bronze(spark, args.bronze, args.max_files_per_trigger)))
    query = (
        validated.writeStream.foreachBatch(write_gold)
        .option("checkpointLocation", f"{args.out}/checkpoint")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    for progress in query.recentProgress:  # every batch: configure() keeps them all
        if progress.get("numInputRows"):
            batch = {
                "batch": progress["batchId"],
                "input": progress["numInputRows"],
                "ms": progress["durationMs"]["triggerExecution"],
            }
            print(PROGRESS_PREFIX + json.dumps(batch, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
