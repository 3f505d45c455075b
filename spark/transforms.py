"""Pure Bronze -> Gold / quarantine transforms: DataFrame in, DataFrame out, Spark functions only.

Every rule here works unchanged under ANSI mode (Spark 4's default): values that may not
convert are read with `try_cast` / `try_to_timestamp`, and nothing is cast before its range
has been checked. Every value that reaches a Gold partition column or a Parquet column is
checked before the write, so no record can fail a batch. A line must be one strict JSON object
(RFC 8259): the checks Spark's parser does not make (text after the object, a key twice, an id
that is not a string) cost a cheap test on every row and a second parse only on the few rows
that test cannot clear. Python 3.9 syntax (EMR 7's interpreter).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from functools import cache
from typing import Dict, NamedTuple, Optional, Tuple

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
from spark.schema import (
    CORRUPT_RECORD_COLUMN,
    EVENT_FIELDS,
    EVENT_SCHEMA,
    EVENT_TIME_FORMATS,
    LOCATION_FIELDS,
    STRICT_JSON_OPTIONS,
)

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
_PARSE_OPTIONS = {**STRICT_JSON_OPTIONS, "columnNameOfCorruptRecord": CORRUPT_RECORD_COLUMN}
# A number as RFC 8259 writes it. Spark's cast reads Java's syntax (`21.5d`, `0x1.8p4`, `+1`, `.5`).
_JSON_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\z"
# Lines whose only braces are their object's and, nested in it, one more pair: with `location`
# parsed as an object (those are its braces), nothing can follow the object's closing brace. The
# same with one pair for a line without a location object. JSON's whitespace is space and tab
# here (a line holds no line break); `\z`, not `$`, which Java lets match before a final U+2028.
_ONE_OBJECT_AND_LOCATION = r"^[ \t]*\{[^{}]*\{[^{}]*\}[^{}]*\}[ \t]*\z"
_ONE_OBJECT = r"^[ \t]*\{[^{}]*\}[ \t]*\z"
# What Spark's parser makes of an `event_id` that is a JSON number (Spark 3.5 writes 1e400 as
# "Infinity" in quotes), boolean, object or array, when it reads it as text.
_LOOKS_LIKE_JSON_NUMBER = r"^(-?[0-9][0-9.eE+-]*|\"Infinity\"|\"-Infinity\")\z"


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
    byte-order mark (a Windows editor's) is not part of the JSON. The parse is strict about what
    Spark's options can say (no single quotes, no NaN); `has_trailing_content`,
    `has_duplicate_key` and `event_id_not_string` say what they cannot.
    """
    value = F.col("value")
    valid = is_valid_utf8(value)
    json_text = F.when(value.startswith("\ufeff"), F.expr("substring(value, 2)")).otherwise(value)
    parsed = lines.select(
        F.when(valid, value).otherwise(valid_utf8(value)).alias("raw_line"),
        value.cast("binary").alias("raw_bytes"),
        valid.alias("is_valid_utf8"),
        json_text.alias("json_text"),
    ).select(
        "*",
        F.from_json("json_text", EVENT_SCHEMA, _PARSE_OPTIONS).alias("record"),
        # The object's keys as they are written, a key written twice twice: one more pass of the
        # tokenizer over the line, no values built.
        F.json_object_keys("json_text").alias("keys"),
    )
    record = F.col("record")
    location = record["location"]
    is_malformed = record.isNull() | record[CORRUPT_RECORD_COLUMN].isNotNull()
    return parsed.select(
        "raw_line",
        "raw_bytes",
        "is_valid_utf8",
        _blank_to_null(F.col("json_text")).isNull().alias("is_blank"),
        is_malformed.alias("is_malformed"),
        (~is_malformed & has_trailing_content(F.col("json_text"), location)).alias("has_trailing_content"),
        (~is_malformed & has_duplicate_key(F.col("keys"), record)).alias("has_duplicate_key"),
        (~is_malformed & event_id_not_string(F.col("json_text"), record["event_id"])).alias("event_id_not_string"),
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
        _location(location, "lat").alias("lat_text"),
        _location(location, "lon").alias("lon_text"),
        _number("try_element_at(record.location, 'lat')").alias("location_lat"),
        _number("try_element_at(record.location, 'lon')").alias("location_lon"),
        normalise_city(_location(location, "city")).alias("location_city"),
        F.upper(_blank_to_null(_location(location, "country"))).alias("location_country"),
        _blank_to_null(record["firmware"]).alias("firmware"),
    )


def has_trailing_content(json_text: Column, location: Column) -> Column:
    """Whether text follows the line's JSON object (a second object, a comma, anything): Spark's
    parser reads the first object of a line and ignores the rest.

    Most lines are cleared by a regular expression on their braces (see _ONE_OBJECT_AND_LOCATION).
    The others are parsed again wrapped as the array `[<line>, {"event_id": "<hash of the line>"}]`:
    the line is one value exactly when the array has two elements and the second is that marker.
    A second value makes it longer, garbage or a trailing comma makes it invalid, and a `]` that
    closes the array early loses the marker, which the line cannot forge (it would have to hold
    its own hash).
    """
    cleared = F.when(location.isNotNull(), json_text.rlike(_ONE_OBJECT_AND_LOCATION)).otherwise(
        json_text.rlike(_ONE_OBJECT)
    )
    marker = F.xxhash64(json_text).cast("string")
    wrapped = F.concat(F.lit("["), json_text, F.lit(',{"event_id":"'), marker, F.lit('"}]'))
    values = F.from_json(wrapped, "array<struct<event_id:string>>", STRICT_JSON_OPTIONS)
    after_the_first = F.transform(F.slice(values, 2, 2), lambda element: element["event_id"])
    one_value = F.coalesce(after_the_first == F.array(marker), F.lit(False))
    return F.when(cleared, F.lit(False)).otherwise(~one_value)


def has_duplicate_key(keys: Column, record: Column) -> Column:
    """Whether a key appears twice at the top of the line's object or in its `location` (Spark's
    parser keeps the last value, other readers the first).

    A line whose key count equals the number of fields the parse found cannot hold a duplicate:
    only the others (nulls, extra keys) have their keys de-duplicated and counted.
    """
    found = sum(record[field].isNotNull().cast("int") for field in EVENT_FIELDS)
    top = F.when(F.size(keys) == found, F.lit(False)).otherwise(F.size(F.array_distinct(keys)) < F.size(keys))
    location = record["location"]
    known = sum(F.map_contains_key(location, field).cast("int") for field in LOCATION_FIELDS)
    nested = F.when(location.isNull() | (F.size(location) == known), F.lit(False)).otherwise(
        F.size(F.array_distinct(F.map_keys(location))) < F.size(location)
    )
    return top | nested


def event_id_not_string(json_text: Column, event_id: Column) -> Column:
    """Whether `event_id` is a JSON number, boolean, object or array: Spark's parser reads any value
    as text (`12345` and `"12345"` both become 12345).

    Spark 3.5 cannot ask a value's JSON type. Only an id whose text looks like one of those types
    (digits, true/false, a leading brace or bracket) is parsed again, as that type alone: the parse
    of a string id fails, so the id is a string exactly when the result is null.
    """

    def parsed_as(data_type: str) -> Column:
        return F.from_json(json_text, f"event_id {data_type}", STRICT_JSON_OPTIONS)["event_id"].isNotNull()

    return (
        F.when(event_id.rlike(_LOOKS_LIKE_JSON_NUMBER), parsed_as("DOUBLE"))
        .when(event_id.isin("true", "false"), parsed_as("BOOLEAN"))
        .when(event_id.startswith("{"), parsed_as("MAP<STRING, STRING>"))
        .when(event_id.startswith("["), parsed_as("ARRAY<STRING>"))
        .otherwise(F.lit(False))
    )


def parse_event_time(text: Column) -> Column:
    """The timestamp in `text` (the first of EVENT_TIME_FORMATS that parses), or null."""
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(pattern)) for pattern in EVENT_TIME_FORMATS])


def normalise_city(city: Column) -> Column:
    """Trim and collapse whitespace, compose combining marks (NFC), then Unicode-aware title case
    ('  SÃO paulo' -> 'São Paulo', 'Zu\u0308rich' -> 'Zürich')."""
    collapsed = F.regexp_replace(city, _WHITESPACE, " ")
    return F.initcap(compose_marks(_blank_to_null(collapsed)))


def compose_marks(text: Column) -> Column:
    """`text` composed as Unicode's normalisation form C (NFC) composes it, so that a city spelled
    decomposed (`u` + U+0308, as macOS and some keyboards send it) is the same value as its composed
    spelling (`ü`). Spark has no Unicode normalisation, and a Python UDF would be fed every row:
    this is Unicode's composition algorithm in Spark's functions, run only on the rare text that
    holds a character that composes with the one before it (two regular expressions for the rest).

    Each character is appended in turn. It replaces the last starter (a character of combining
    class 0) with their composite when there is one and nothing blocks them: the starter comes
    right before it, or only marks of a lower class come between. This is exactly NFC for text
    whose marks are in canonical order, as NFC and NFD text always is; a mark typed out of that
    order, or a singleton such as U+212B ANGSTROM SIGN, is left as it is.
    """
    table = _composition_table()
    # Entry 1 is every character outside the table (class 0, composes with nothing), so no index
    # is ever null: Spark 4's element_at under ANSI fails on a null index instead of returning null.
    # Each array is one literal, split once by the optimizer: arrays of a thousand literal columns
    # took the driver seconds to build, once a run.
    classes = F.split(F.lit(",".join(map(str, (0, *table.classes)))), ",").cast("array<int>")
    bases, composites = (F.split(F.lit(",".join(("", *column))), ",") for column in (table.bases, table.composites))
    numbers = "".join(chr(_FIRST_NUMBER + index) for index in range(len(table.characters)))

    def numbered(character: Column) -> Column:
        # The private-use character that numbers the character's entry in the table (any other
        # character stays itself): one hash lookup, done once per character.
        number = F.call_function("translate", character, F.lit(table.characters), F.lit(numbers))
        return F.struct(character.alias("character"), number.alias("number"))

    def append(state: Column, letter: Column) -> Column:
        done, starter_at, last_class = state["done"], state["starter_at"], state["last_class"]
        character = letter["character"]
        entry = F.when(letter["number"] != character, F.ascii(letter["number"]) - _FIRST_NUMBER + 2).otherwise(1)
        character_class = F.element_at(classes, entry)
        starter = done.substr(starter_at, F.lit(1))
        unblocked = (starter_at > 0) & ((starter_at == F.length(done)) | (last_class < character_class))
        starters, into = F.element_at(bases, entry), F.element_at(composites, entry)
        composes = F.coalesce(unblocked & (starters != "") & starters.contains(starter), F.lit(False))
        composed = F.overlay(done, F.call_function("translate", starter, starters, into), starter_at, F.lit(1))
        appended = F.concat(done, character)
        kept = F.struct(composed.alias("done"), starter_at.alias("starter_at"), last_class.alias("last_class"))
        return F.when(composes, kept).otherwise(
            F.struct(
                appended.alias("done"),
                F.when(character_class == 0, F.length(appended)).otherwise(starter_at).alias("starter_at"),
                character_class.alias("last_class"),
            )
        )

    start = F.struct(F.lit("").alias("done"), F.lit(0).alias("starter_at"), F.lit(0).alias("last_class"))
    letters = F.transform(F.regexp_extract_all(text, F.lit("(?s)."), 0), numbered)
    composed = F.aggregate(letters, start, append, lambda state: state["done"])
    # The first expression is cheap; the second, exact one runs only on the text the first lets through.
    might_compose = text.rlike(_MARK_OR_JAMO) & text.rlike(table.composing)
    return F.when(might_compose, composed).otherwise(text)


class _CompositionTable(NamedTuple):
    """Unicode's composition and combining-class tables, one entry for each character that composes
    with a starter before it or has a combining class above 0 (in `characters`)."""

    characters: str
    classes: Tuple[int, ...]
    bases: Tuple[str, ...]  # the starters each composes with ("" for none)
    composites: Tuple[str, ...]  # what each of those starters becomes, in the same order
    composing: str  # a regular expression's class of the characters that compose


# Every character that composes with the one before it or has a combining class above 0 is a mark,
# but for Hangul's vowel and final jamo.
_MARK_OR_JAMO = r"[\p{M}\x{1161}-\x{1175}\x{11A8}-\x{11C2}]"
_FIRST_NUMBER = 0xE000  # Unicode's private use area: room for the table's 1,000 or so entries


@cache
def _composition_table() -> _CompositionTable:
    """The table from Python's `unicodedata` (built once, in about a second)."""
    compositions: Dict[str, Tuple[str, str]] = {}
    for composite in map(chr, range(0x110000)):
        pair = _canonical_pair(composite)
        # A pair NFC does not compose (a composition exclusion) is no rule.
        if pair and unicodedata.normalize("NFC", "".join(pair)) == composite:
            starter, follower = pair
            starters, composites = compositions.get(follower, ("", ""))
            compositions[follower] = (starters + starter, composites + composite)
    marks = (chr(code) for code in range(0x110000) if unicodedata.combining(chr(code)))
    characters = sorted(set(marks) | set(compositions))
    rules = [compositions.get(character, ("", "")) for character in characters]
    return _CompositionTable(
        "".join(characters),
        tuple(unicodedata.combining(character) for character in characters),
        tuple(starters for starters, _ in rules),
        tuple(composites for _, composites in rules),
        "[" + "".join(f"\\x{{{ord(character):x}}}" for character in sorted(compositions)) + "]",
    )


def _canonical_pair(character: str) -> Optional[Tuple[str, str]]:
    """The two characters `character` canonically decomposes into first, if it does (a Hangul
    syllable by Unicode's arithmetic, which Python's table leaves out: LV is L + V, LVT is LV + T)."""
    code = ord(character)
    if 0xAC00 <= code <= 0xD7A3:
        final = (code - 0xAC00) % 28
        if final:
            return chr(code - final), chr(0x11A7 + final)
        return chr(0x1100 + (code - 0xAC00) // 588), chr(0x1161 + (code - 0xAC00) % 588 // 28)
    parts = unicodedata.decomposition(character).split()
    if len(parts) != 2 or parts[0].startswith("<"):
        return None
    return chr(int(parts[0], 16)), chr(int(parts[1], 16))


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
        "non_string_event_id": F.col("event_id_not_string"),
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
        .when(F.col("has_trailing_content"), F.lit("trailing_content"))
        .when(F.col("has_duplicate_key"), F.lit("duplicate_key"))
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
    """A finite double from the text at `sql_path` when it is a JSON number (padded with spaces or
    not), else null: Spark's cast alone reads Java's syntax (`21.5d`, `0x1.8p4`) and NaN or Infinity."""
    text = f"trim({sql_path})"
    value = F.when(F.expr(text).rlike(_JSON_NUMBER), F.expr(f"try_cast({text} AS DOUBLE)"))
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def _location(location: Column, field: str) -> Column:
    """A field of the `location` map (null when absent, under ANSI mode too)."""
    return F.try_element_at(location, F.lit(field))


def _not_numeric(text_column: str, value_column: str) -> Column:
    return F.col(text_column).isNotNull() & F.col(value_column).isNull()
