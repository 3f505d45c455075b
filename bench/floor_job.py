"""Floor for the benchmark: the least any Spark job writing our Gold does on this machine. Our own
transforms (parse, clean, ≤1 file per partition), as one batch job: no de-duplication state, no
quarantine, no checkpoint, no exactly-once bookkeeping. Reference only."""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from spark.transforms import cluster_by_partition, parse_lines, to_gold, with_reasons

SHUFFLE_PARTITIONS = 4


def main(bronze: str, gold: str) -> None:
    spark = SparkSession.builder.appName("iotpipe-floor").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
    lines = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.jsonl").text(bronze)
    gold_rows = cluster_by_partition(to_gold(with_reasons(parse_lines(lines))), SHUFFLE_PARTITIONS)
    gold_rows.write.mode("overwrite").partitionBy("date", "location_city").parquet(gold)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
