"""Explicit schema of a Bronze event line. Readings are read as text so that a non-numeric
reading is detected and quarantined instead of silently becoming null."""

from __future__ import annotations

from pyspark.sql import types as T

CORRUPT_RECORD_COLUMN = "_corrupt_record"
EVENT_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSS]XXX"

LOCATION_SCHEMA = T.StructType(
    [
        T.StructField("city", T.StringType()),
        T.StructField("country", T.StringType()),
        T.StructField("lat", T.StringType()),
        T.StructField("lon", T.StringType()),
    ]
)

EVENT_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("device_id", T.StringType()),
        T.StructField("event_time", T.StringType()),
        T.StructField("location", LOCATION_SCHEMA),
        T.StructField("temperature_c", T.StringType()),
        T.StructField("humidity_pct", T.StringType()),
        T.StructField("battery_pct", T.StringType()),
        T.StructField("firmware", T.StringType()),
        T.StructField(CORRUPT_RECORD_COLUMN, T.StringType()),
    ]
)
