"""The cleaning rules in one place: each reason code, its priority, its thresholds and what it means.

The Spark transforms (`spark/transforms.py`) take their codes and thresholds from here as plain
constants, so checking a record costs the same; the run report, the quality policy's checks of
reason codes and `docs/cleaning-rules.md` (held to this list by a test) read the descriptions.
Python 3.9 syntax and no third-party import: the Spark job ships this module to the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

TEMPERATURE_RANGE_C = (-40.0, 85.0)
HUMIDITY_RANGE_PCT = (0.0, 100.0)
BATTERY_RANGE_PCT = (0.0, 100.0)
LATITUDE_RANGE = (-90.0, 90.0)
LONGITUDE_RANGE = (-180.0, 180.0)
# Plausible event times: from 2001-01-01 (after the values reset clocks send: 1970, GPS's 1980,
# RTCs' 2000-01-01; and after 1900, before which Parquet's writer refuses timestamps) to one day
# after the batch's own time (clock drift, a wrong time zone). In a stream, current_timestamp()
# is the batch's time, kept in the offset log, so a replayed batch judges the same way.
EARLIEST_EVENT_TIME = "2001-01-01 00:00:00"
LATEST_EVENT_TIME_AHEAD = "INTERVAL 1 DAY"
# A city is a partition directory `location_city=<city>`, where Iceberg URL-encodes it (%XX, 3
# bytes for each byte but letters, digits and .-*_). Local file systems allow 255 bytes per name
# (`location_city=` takes 14) and S3 1,024 per key: the escaped city may take at most 240 bytes.
CITY_MAX_ESCAPED_BYTES = 240


def _range(bounds: tuple, unit: str = "") -> str:
    return f"{bounds[0]:g}..{bounds[1]:g}{unit}"


@dataclass(frozen=True)
class CleaningRule:
    """One reason a record is quarantined; `description` is the rule as docs and reports state it."""

    code: str
    description: str
    line_rule: bool = False  # judges the line as a whole: when it applies, it is the only reason


# In priority order: a record's primary reason is the first that applies.
CLEANING_RULES = (
    CleaningRule("invalid_utf8", "the line's bytes are not valid UTF-8", line_rule=True),
    CleaningRule("blank_line", "the line is empty or only whitespace", line_rule=True),
    CleaningRule(
        "malformed_json",
        "the line is not a JSON object as RFC 8259 writes one (truncated, not JSON, an array, single-quoted "
        "strings, a bare `NaN` or `Infinity`, nested deeper than the parser allows)",
        line_rule=True,
    ),
    CleaningRule(
        "trailing_content",
        "the line goes on after its JSON object: a second object, a comma or any other text "
        "(`{...} {...}`, `{...},`, `{...} junk`)",
        line_rule=True,
    ),
    CleaningRule(
        "duplicate_key",
        "a key appears twice in the object or in its `location` (JSON parsers disagree on which value wins)",
        line_rule=True,
    ),
    CleaningRule("missing_event_id", "`event_id` absent, null or blank"),
    CleaningRule(
        "non_string_event_id",
        '`event_id` is a JSON number, boolean, object or array, not a string (`12345` and `"12345"` would '
        "become one id)",
    ),
    CleaningRule("missing_device_id", "`device_id` absent, null or blank"),
    CleaningRule("missing_event_time", "`event_time` absent, null or blank"),
    CleaningRule(
        "unparseable_event_time",
        "`event_time` present but not ISO-8601 with an offset: `yyyy-MM-ddTHH:mm:ss`, an optional fraction of "
        "1 to 9 digits (kept to the microsecond: digits 7-9 are cut), then `Z`, `+hh:mm` or `+hhmm` "
        "(`2026-11-20T13:45:12.345Z`, Python's `2026-11-20T13:45:12.123456+00:00`, `2026-11-20T13:45:12+0000`). "
        "A time without an offset, an hour-only offset (`+05`) or a leap second (`23:59:60`) is not accepted",
    ),
    CleaningRule(
        "implausible_event_time",
        f"`event_time` before {EARLIEST_EVENT_TIME.replace(' ', 'T')}Z or more than "
        f"{LATEST_EVENT_TIME_AHEAD.split(' ', 1)[1].lower()} after the batch's time",
    ),
    CleaningRule("missing_reading", "`temperature_c` or `humidity_pct` absent or null"),
    CleaningRule(
        "non_numeric_reading",
        "a reading (or `battery_pct`) present but not a finite JSON number, nor a string holding one "
        '(`"N/A"`, `"NaN"`, `"Infinity"`, `"21,4"`, `"21.5d"`, `"0x1.8p4"`, `"+1"`, `1e400`)',
    ),
    CleaningRule(
        "temperature_out_of_range", f"`temperature_c` outside {_range(TEMPERATURE_RANGE_C, ' °C')} (inclusive)"
    ),
    CleaningRule("humidity_out_of_range", f"`humidity_pct` outside {_range(HUMIDITY_RANGE_PCT, ' %')}"),
    CleaningRule("battery_out_of_range", f"`battery_pct` outside {_range(BATTERY_RANGE_PCT)}"),
    CleaningRule(
        "invalid_coordinates",
        f"`location.lat` / `location.lon` absent, non-numeric, or outside {_range(LATITUDE_RANGE)} / "
        f"{_range(LONGITUDE_RANGE)}",
    ),
    CleaningRule("missing_city", "`location.city` absent or blank"),
    CleaningRule(
        "unusable_city",
        "`location.city` cannot be a partition value: a control character or a path separator in it, or more "
        f"than {CITY_MAX_ESCAPED_BYTES} bytes once escaped (see *Partition values* below)",
    ),
)

REASON_CODES = tuple(rule.code for rule in CLEANING_RULES)
LINE_REASONS = tuple(rule.code for rule in CLEANING_RULES if rule.line_rule)
RULES_BY_CODE = {rule.code: rule for rule in CLEANING_RULES}


def describe(code: str) -> str:
    """The rule behind a reason code, or the code itself for one this version does not know."""
    rule = RULES_BY_CODE.get(code)
    return rule.description if rule else code
