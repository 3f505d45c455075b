"""Pure Bronze -> Gold / quarantine transforms: DataFrame in, DataFrame out, Spark functions only.

Every rule here works unchanged under ANSI mode (Spark 4's default): values that may not
convert are read with `try_cast` / `try_to_timestamp`, and nothing is cast before its range
has been checked. Every value that reaches a Gold partition column or a Parquet column is
checked before the write, so no record can fail a batch. Python 3.9 syntax (EMR 7's interpreter).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import pyspark
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from iotpipe.lake.cleaning_rules import (
    BATTERY_RANGE_PCT,
    CITY_MAX_ESCAPED_BYTES,
    EARLIEST_EVENT_TIME,
    HUMIDITY_RANGE_PCT,
    LATEST_EVENT_TIME_AHEAD,
    LATITUDE_RANGE,
    LONGITUDE_RANGE,
    TEMPERATURE_RANGE_C,
)
from iotpipe.lake.cleaning_rules import REASON_CODES as REASON_CODES  # the job and tests read them here too
from spark.schema import CORRUPT_RECORD_COLUMN, EVENT_SCHEMA, EVENT_TIME_FORMATS

# Reason codes (in priority order), their thresholds and descriptions: iotpipe.lake.cleaning_rules.
# Control characters and path separators are never a city.
_NOT_A_CITY = r"[\p{Cc}/\\]"

GOLD_COLUMNS = (
    "event_id",
    "device_id",
    "event_time",
    "temperature_c",
    "humidity_pct",
    "battery_pct",
    "firmware",
    "location_country",
    "location_lat",
    "location_lon",
    "source_file",
    "date",
    "location_city",
)
QUARANTINE_COLUMNS = ("reasons", "event_id", "raw_line", "raw_bytes", "source_file", "reason", "quarantined_at")

_WHITESPACE = r"[\s\u00A0]+"
_TRIMMED = " \t\n\r\f\u000b\u00a0"


_SPARK_4 = int(pyspark.__version__.split(".")[0]) >= 4


def is_valid_utf8(text: Column) -> Column:
    """Whether the bytes Spark's text source put in `text` are valid UTF-8.

    Spark stores a line's bytes as they are. Spark 4 has `is_valid_utf8`; on Spark 3.5,
    `encode(..., 'UTF-8')` decodes with replacement first, so it changes exactly the invalid lines.
    """
    if _SPARK_4:
        return F.call_function("is_valid_utf8", text)
    return text.cast("binary") == F.encode(text, "UTF-8")


def valid_utf8(text: Column) -> Column:
    """`text` with every invalid byte sequence replaced by U+FFFD: valid UTF-8, safe in Parquet.

    Spark 4's `decode` raises on invalid bytes (3.5 replaced them), so each version uses its own way.
    """
    if _SPARK_4:
        return F.call_function("make_valid_utf8", text)
    return F.decode(F.encode(text, "UTF-8"), "UTF-8")


def parse_lines(lines: DataFrame) -> DataFrame:
    """Parse raw JSON Lines (a `value` column) into typed candidate columns.

    Keeps the line losslessly: `raw_bytes` (its exact bytes) and `raw_line` (readable text, valid
    UTF-8: the line itself, or with U+FFFD for the bytes that were not UTF-8). A leading
    byte-order mark (a Windows editor's) is not part of the JSON.
    """
    value = F.col("value")
    valid = is_valid_utf8(value)
    json_text = F.when(value.startswith("\ufeff"), F.expr("substring(value, 2)")).otherwise(value)
    parsed = lines.select(
        F.when(valid, value).otherwise(valid_utf8(value)).alias("raw_line"),
        value.cast("binary").alias("raw_bytes"),
        valid.alias("is_valid_utf8"),
        _blank_to_null(json_text).isNull().alias("is_blank"),
        F.from_json(json_text, EVENT_SCHEMA, {"columnNameOfCorruptRecord": CORRUPT_RECORD_COLUMN}).alias("record"),
    )
    record = F.col("record")
    return parsed.select(
        "raw_line",
        "raw_bytes",
        "is_valid_utf8",
        "is_blank",
        (record.isNull() | record[CORRUPT_RECORD_COLUMN].isNotNull()).alias("is_malformed"),
        _blank_to_null(record["event_id"]).alias("event_id"),
        _blank_to_null(record["device_id"]).alias("device_id"),
        _blank_to_null(record["event_time"]).alias("event_time_text"),
        parse_event_time(F.trim(record["event_time"])).alias("event_time"),
        record["temperature_c"].alias("temperature_text"),
        record["humidity_pct"].alias("humidity_text"),
        record["battery_pct"].alias("battery_text"),
        _number("record.temperature_c").alias("temperature_c"),
        _number("record.humidity_pct").alias("humidity_pct"),
        _number("record.battery_pct").alias("battery_value"),
        record["location"]["lat"].alias("lat_text"),
        record["location"]["lon"].alias("lon_text"),
        _number("record.location.lat").alias("location_lat"),
        _number("record.location.lon").alias("location_lon"),
        normalise_city(record["location"]["city"]).alias("location_city"),
        F.upper(_blank_to_null(record["location"]["country"])).alias("location_country"),
        _blank_to_null(record["firmware"]).alias("firmware"),
    )


def parse_event_time(text: Column) -> Column:
    """The timestamp in `text` (the first of EVENT_TIME_FORMATS that parses), or null."""
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(pattern)) for pattern in EVENT_TIME_FORMATS])


def normalise_city(city: Column) -> Column:
    """Trim and collapse whitespace, then Unicode-aware title case ('  SÃO paulo' -> 'São Paulo')."""
    collapsed = F.regexp_replace(city, _WHITESPACE, " ")
    return F.initcap(_blank_to_null(collapsed))


def with_reasons(parsed: DataFrame) -> DataFrame:
    """Add `reasons` (every rule the record breaks, in priority order), `reason` (the first) and
    `source_file` (the Bronze object, kept in Gold and quarantine as lineage).

    `source_file` comes from `input_file_name()` (see source_file), which is non-deterministic, so the projection
    that computes the reasons is one the optimizer cannot push the Gold and quarantine filters
    below: without it every rule (and once even the JSON parse) ran again inside the filter,
    up to ten times slower.
    """
    checks = {
        "missing_event_id": F.col("event_id").isNull(),
        "missing_device_id": F.col("device_id").isNull(),
        "missing_event_time": F.col("event_time_text").isNull(),
        "unparseable_event_time": F.col("event_time_text").isNotNull() & F.col("event_time").isNull(),
        "implausible_event_time": (F.col("event_time") < F.lit(EARLIEST_EVENT_TIME).cast("timestamp"))
        | (F.col("event_time") > F.current_timestamp() + F.expr(LATEST_EVENT_TIME_AHEAD)),
        "missing_reading": F.col("temperature_text").isNull() | F.col("humidity_text").isNull(),
        "non_numeric_reading": _not_numeric("temperature_text", "temperature_c")
        | _not_numeric("humidity_text", "humidity_pct")
        | _not_numeric("battery_text", "battery_value"),
        "temperature_out_of_range": ~F.col("temperature_c").between(*TEMPERATURE_RANGE_C),
        "humidity_out_of_range": ~F.col("humidity_pct").between(*HUMIDITY_RANGE_PCT),
        "battery_out_of_range": ~F.col("battery_value").between(*BATTERY_RANGE_PCT),
        "invalid_coordinates": F.col("location_lat").isNull()
        | F.col("location_lon").isNull()
        | ~F.col("location_lat").between(*LATITUDE_RANGE)
        | ~F.col("location_lon").between(*LONGITUDE_RANGE),
        "missing_city": F.col("location_city").isNull(),
        "unusable_city": unusable_city(F.col("location_city")),
    }
    broken = {code: F.coalesce(check, F.lit(False)) for code, check in checks.items()}
    # A line that is not UTF-8, blank or not a JSON object has that one reason and no other.
    line_reason = (
        F.when(~F.col("is_valid_utf8"), F.lit("invalid_utf8"))
        .when(F.col("is_blank"), F.lit("blank_line"))
        .when(F.col("is_malformed"), F.lit("malformed_json"))
    )
    # The primary reason is a cheap CASE chain; the array of all reasons is built only for the
    # few rejected rows (building it for every row cost more than a fifth of the cleaning).
    reason = F.when(F.col("line_reason").isNotNull(), F.col("line_reason"))
    for code, is_broken in broken.items():
        reason = reason.when(is_broken, F.lit(code))
    flagged = [F.when(is_broken, F.lit(code)) for code, is_broken in broken.items()]
    reasons = F.when(F.col("line_reason").isNotNull(), F.array(F.col("line_reason"))).otherwise(
        F.array_compact(F.array(*flagged))
    )
    return (
        parsed.withColumn("line_reason", line_reason)
        .withColumn("reason", reason)
        .withColumn("reasons", F.when(F.col("reason").isNotNull(), reasons))
        .drop("line_reason")
        .withColumn("source_file", source_file())
    )


def source_file() -> Column:
    """The real path of the Bronze object a row came from.

    `input_file_name()` is Hadoop's `Path.toUri().toString()`: a space becomes `%20` and `%`
    becomes `%25`, while `+` and non-ASCII characters stay as they are. `url_decode` undoes the
    escapes but, being a form decoder, would also turn `+` into a space: so `+` is escaped first.
    """
    return F.expr("url_decode(replace(input_file_name(), '+', '%2B'))")


def unusable_city(city: Column) -> Column:
    """A city that cannot be a Gold partition value: a control character or a path separator in
    it, or more than CITY_MAX_ESCAPED_BYTES bytes once Iceberg has escaped it for the path (it
    URL-encodes a partition value: every byte but letters, digits and `.-*_` as `%XX`)."""
    return city.rlike(_NOT_A_CITY) | (F.octet_length(F.url_encode(city)) > CITY_MAX_ESCAPED_BYTES)


def for_both_sinks(validated: DataFrame) -> DataFrame:
    """The columns Gold and the quarantine take from a validated row, and nothing else: what a
    batch keeps in memory to write both from one parse. The raw line stays only on rejected rows."""
    rejected = F.col("reason").isNotNull()
    return validated.select(
        *[c for c in GOLD_COLUMNS if c not in ("battery_pct", "date")],
        "battery_value",
        "reason",
        "reasons",
        F.when(rejected, F.col("raw_line")).alias("raw_line"),
        F.when(rejected, F.col("raw_bytes")).alias("raw_bytes"),
    )


def to_gold(validated: DataFrame) -> DataFrame:
    """Valid records as typed Gold rows, with the `date` (UTC) partition column."""
    valid = validated.where(F.col("reason").isNull())
    return valid.select(
        "event_id",
        "device_id",
        "event_time",
        "temperature_c",
        "humidity_pct",
        F.col("battery_value").cast("int").alias("battery_pct"),
        "firmware",
        "location_country",
        "location_lat",
        "location_lon",
        "source_file",
        F.to_date("event_time").alias("date"),
        "location_city",
    )


def to_quarantine(validated: DataFrame, quarantined_at: Optional[datetime] = None) -> DataFrame:
    """Rejected records with their primary reason, all reasons and the raw line, nothing lost, and
    when the pipeline took them (the batch's time; now, by default)."""
    taken = F.lit(quarantined_at).cast("timestamp") if quarantined_at else F.current_timestamp()
    return validated.where(F.col("reason").isNotNull()).select(
        *[F.col(c) for c in QUARANTINE_COLUMNS if c != "quarantined_at"], taken.alias("quarantined_at")
    )


def cluster_by_partition(gold: DataFrame, partitions: int) -> DataFrame:
    """Route each (date, city) to one task, so a batch writes at most one file per Gold partition
    (the benchmark's plain Parquet floor; the Iceberg table asks Spark for the same itself)."""
    return gold.repartition(partitions, "date", "location_city")


def _blank_to_null(column: Column) -> Column:
    """Trimmed text, or null when nothing is left (btrim: ten times cheaper than a regex here)."""
    trimmed = F.btrim(column, F.lit(_TRIMMED))
    return F.when(trimmed != "", trimmed)


def _number(sql_path: str) -> Column:
    """A finite double from the text at `sql_path`, or null when it is not a number (NaN, Infinity)."""
    value = F.expr(f"try_cast(trim({sql_path}) AS DOUBLE)")
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def _not_numeric(text_column: str, value_column: str) -> Column:
    return F.col(text_column).isNotNull() & F.col(value_column).isNull()
