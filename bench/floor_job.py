"""Floor for the benchmark: the least any Spark job writing our Gold does on this machine. Our own
transforms (parse, clean, ≤1 file per partition), as one batch job: no de-duplication state, no
quarantine, no checkpoint, no exactly-once bookkeeping. Reference only."""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession

from iotpipe.run.spark_args import SparkJobArgs
from spark.job import configure
from spark.transforms import cluster_by_partition, parse_lines, to_gold, with_reasons

SHUFFLE_PARTITIONS = SparkJobArgs.shuffle_partitions


def main(bronze: str, gold: str) -> None:
    spark = SparkSession.builder.appName("iotpipe-floor").getOrCreate()
    configure(spark, argparse.Namespace(shuffle_partitions=SHUFFLE_PARTITIONS))  # our job's session settings
    lines = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.jsonl").text(bronze)
    gold_rows = cluster_by_partition(to_gold(with_reasons(parse_lines(lines))), SHUFFLE_PARTITIONS)
    gold_rows.write.mode("overwrite").partitionBy("date", "location_city").parquet(gold)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
