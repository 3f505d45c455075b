"""The streaming job as it de-duplicated before `spark.dedup`: Spark's
`dropDuplicatesWithinWatermark` over RocksDB state, Gold through the plain file sink. Kept only
to be measured beside the job in the same benchmark run (docs/design.md)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark import job
from spark.transforms import cluster_by_partition

_configure = job.configure


def drop_retransmissions(gold: DataFrame, horizon: str) -> DataFrame:
    return (
        gold.withColumn("arrived_at", F.current_timestamp())
        .withWatermark("arrived_at", horizon)
        .dropDuplicatesWithinWatermark(["event_id"])
        .drop("arrived_at")
    )


def configure(spark, args) -> None:
    _configure(spark, args)
    spark.conf.set(
        "spark.sql.streaming.stateStore.providerClass",
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    )
    spark.conf.set("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
    spark.conf.set("spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows", "false")


def start_stateful_gold_query(frame: DataFrame, writer, checkpoint: str, trigger: dict):
    args = writer.args
    unique = drop_retransmissions(frame, args.dedup_horizon).observe("gold", F.count(F.lit(1)).alias("rows"))
    clustered = cluster_by_partition(unique, args.shuffle_partitions)
    return job.start_query(clustered, "gold", args.gold, checkpoint, ["date", "location_city"], trigger)


if __name__ == "__main__":
    job.configure = configure
    job.start_gold_query = start_stateful_gold_query
    job.main()
