"""Baseline for the benchmark: the Spark job as commonly first written (batch, schema inference,
a Python UDF for the city casing fix, no control of output files). Reference only."""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


def main(bronze: str, gold: str) -> None:
    spark = SparkSession.builder.appName("iotpipe-naive").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    raw = spark.read.option("recursiveFileLookup", "true").json(bronze)  # schema inference: a full extra pass

    @F.udf(T.StringType())
    def title_case(city):
        return " ".join(word.capitalize() for word in city.split()) if city else None

    events = (
        raw.where(F.col("_corrupt_record").isNull() if "_corrupt_record" in raw.columns else F.lit(True))
        .withColumn("location_city", title_case(F.col("location.city")))
        .withColumn("event_time", F.to_timestamp("event_time"))
        .withColumn("temperature_c", F.col("temperature_c").cast("double"))
        .withColumn("humidity_pct", F.col("humidity_pct").cast("double"))
        .where(F.col("event_time").isNotNull() & F.col("temperature_c").between(-40, 85))
        .where(F.col("humidity_pct").between(0, 100) & F.col("battery_pct").between(0, 100))
        .where(F.col("location.lat").between(-90, 90) & F.col("location.lon").between(-180, 180))
        .where(F.col("event_id").isNotNull() & F.col("device_id").isNotNull())
        .dropDuplicates(["event_id"])
        .withColumn("date", F.to_date("event_time"))
    )
    events.write.mode("overwrite").partitionBy("date", "location_city").parquet(gold)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
