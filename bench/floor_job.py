"""Floor for the benchmark: the least any Spark job writing our Gold does on this machine. Our own
transforms (parse, clean, ≤1 file per partition), as one batch job: no de-duplication state, no
quarantine, no checkpoint, no exactly-once bookkeeping. Reference only."""

from __future__ import annotations

import argparse
import sys
import tempfile

from pyspark.sql import SparkSession

from iotpipe.lake.tables import local_catalog_uri
from iotpipe.run.spark_args import SparkJobArgs
from spark.job import configure
from spark.transforms import cluster_by_partition, parse_lines, to_gold, with_reasons

SHUFFLE_PARTITIONS = SparkJobArgs.shuffle_partitions


def configure_as_our_job(spark: SparkSession, scratch: str) -> None:
    """Our job's session settings (`spark.job.configure`). They include its Iceberg catalog, which
    a floor never uses (it writes plain Parquet): pointed at a scratch folder."""
    args = argparse.Namespace(
        shuffle_partitions=SHUFFLE_PARTITIONS, fault=None, catalog=local_catalog_uri(scratch), gold=f"{scratch}/gold"
    )
    configure(spark, args)


def main(bronze: str, gold: str) -> None:
    spark = SparkSession.builder.appName("iotpipe-floor").getOrCreate()
    with tempfile.TemporaryDirectory(prefix="iotpipe-floor-") as scratch:
        configure_as_our_job(spark, scratch)
        write_gold(spark, bronze, gold)


def write_gold(spark: SparkSession, bronze: str, gold: str) -> None:
    lines = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.jsonl").text(bronze)
    gold_rows = cluster_by_partition(to_gold(with_reasons(parse_lines(lines))), SHUFFLE_PARTITIONS)
    gold_rows.write.mode("overwrite").partitionBy("date", "location_city").parquet(gold)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
