"""Explicit schema of a Bronze event line. Readings are read as text so that a non-numeric
reading is detected and quarantined instead of silently becoming null; `location` is read as a
map of text, which keeps a key that appears twice twice (a struct keeps the last value), so a
duplicate key there can be seen."""

from __future__ import annotations

from pyspark.sql import types as T

CORRUPT_RECORD_COLUMN = "_corrupt_record"
# ISO 8601 with an offset: a fraction of 1 to 9 digits (Spark parses up to as many digits as
# there are `S`s; timestamps keep microseconds, so digits 7-9 are cut), and the offset as `Z`,
# `+hh:mm` (XXX) or `+hhmm` (XX). The second pattern is tried only when the first fails. A time
# without an offset is not accepted: it is the local time of an unknown zone.
EVENT_TIME_FORMATS = (
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX",
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XX",
)

LOCATION_FIELDS = ("city", "country", "lat", "lon")
LOCATION_SCHEMA = T.MapType(T.StringType(), T.StringType())

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

# The top-level keys the job reads (the corrupt-record column is Spark's, not the line's).
EVENT_FIELDS = tuple(field.name for field in EVENT_SCHEMA.fields if field.name != CORRUPT_RECORD_COLUMN)
# Spark's JSON reader is lenient by default; RFC 8259 has no single-quoted strings and no NaN or
# Infinity. The other lenient Jackson features Spark exposes (comments, unquoted names, leading
# zeros, any escaped character, raw control characters) are off by default.
STRICT_JSON_OPTIONS = {"allowSingleQuotes": "false", "allowNonNumericNumbers": "false"}
