"""The cleaning rules, one behaviour each, on batch DataFrames (the same functions the stream uses)."""

from __future__ import annotations

import json
import unicodedata

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark.transforms import GOLD_COLUMNS, normalise_city, parse_lines, to_gold, to_quarantine, with_reasons

pytestmark = pytest.mark.spark

CLEAN = {
    "event_id": "e-1",
    "device_id": "dev-000001",
    "event_time": "2026-11-20T13:45:12.345Z",
    "location": {"city": "Berlin", "country": "de", "lat": 52.52, "lon": 13.405},
    "temperature_c": 21.4,
    "humidity_pct": 48.2,
    "battery_pct": 87,
    "firmware": "1.4.2",
}


def variant(**changes) -> str:
    record = json.loads(json.dumps(CLEAN))
    for key, value in changes.items():
        target = record["location"] if key in ("city", "country", "lat", "lon") else record
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return json.dumps(record, ensure_ascii=False)


def validate(spark, lines: list[str]):
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    return with_reasons(parse_lines(frame))


# Each case is its own line in one DataFrame: one Spark run checks them all, and a failure names the lines.
RULE_CASES = [
    ('{"event_id": "e-1", "device_id": ', "malformed_json"),
    ("[1, 2, 3]", "malformed_json"),
    ("not json at all", "malformed_json"),
    (variant(event_id=...), "missing_event_id"),
    (variant(event_id="   "), "missing_event_id"),
    (variant(device_id=None), "missing_device_id"),
    (variant(event_time=...), "missing_event_time"),
    (variant(event_time="yesterday"), "unparseable_event_time"),
    (variant(event_time="2026-13-45T99:61:00Z"), "unparseable_event_time"),
    (variant(temperature_c=None), "missing_reading"),
    (variant(humidity_pct=...), "missing_reading"),
    (variant(temperature_c="N/A"), "non_numeric_reading"),
    (variant(humidity_pct="NaN"), "non_numeric_reading"),
    (variant(temperature_c="Infinity"), "non_numeric_reading"),
    (variant(battery_pct="full"), "non_numeric_reading"),
    (variant(temperature_c=85.1), "temperature_out_of_range"),
    (variant(temperature_c=-40.5), "temperature_out_of_range"),
    (variant(humidity_pct=100.2), "humidity_out_of_range"),
    (variant(humidity_pct=-0.1), "humidity_out_of_range"),
    (variant(battery_pct=101), "battery_out_of_range"),
    (variant(battery_pct=-1), "battery_out_of_range"),
    (variant(lat=91.0), "invalid_coordinates"),
    (variant(lon=-180.5), "invalid_coordinates"),
    (variant(lat=...), "invalid_coordinates"),
    (variant(city="  "), "missing_city"),
    ("", "blank_line"),
    (" \t ", "blank_line"),
    (variant(event_time="0001-01-01T00:00:00Z"), "implausible_event_time"),
    (variant(event_time="1970-01-01T00:00:00Z"), "implausible_event_time"),
    (variant(event_time="2000-12-31T23:59:59Z"), "implausible_event_time"),
    (variant(event_time="9999-12-31T23:59:59Z"), "implausible_event_time"),
    (variant(city="Berlin/Mitte"), "unusable_city"),
    (variant(city="Ber\\lin"), "unusable_city"),
    (variant(city="Ber\u0000lin"), "unusable_city"),
    (variant(city="Ber\u0085lin"), "unusable_city"),
    (variant(city="x" * 241), "unusable_city"),
    (variant(city="%" * 81), "unusable_city"),
    (variant(city="ü" * 41), "unusable_city"),
]


def test_each_rule_quarantines_with_its_reason(spark):
    lines = [line for line, _ in RULE_CASES]
    assert len(set(lines)) == len(lines)
    rows = to_quarantine(validate(spark, lines)).collect()
    assert sorted((r.raw_line, r.reason) for r in rows) == sorted(RULE_CASES)


def test_a_record_breaking_several_rules_keeps_all_reasons_in_priority_order(spark):
    line = variant(device_id=None, temperature_c=120.0, lat=95.0)
    (row,) = to_quarantine(validate(spark, [line])).collect()
    assert row.reason == "missing_device_id"
    assert row.reasons == ["missing_device_id", "temperature_out_of_range", "invalid_coordinates"]


EDGE_CASES = [
    {"event_time": "2001-01-01T00:00:00Z"},
    {"event_time": "2026-11-20T13:45:12+14:00"},
    {"city": "x" * 240},
    {"city": "%" * 80},
    {"city": "ü" * 40},
    {"city": "Val-d'Or"},
    {"city": "St. John's"},
    {"city": "Ciudad de México"},
]


def test_values_at_the_edge_of_what_the_sink_can_write_are_accepted(spark):
    lines = [variant(event_id=f"e-{i}", **changes) for i, changes in enumerate(EDGE_CASES)]
    gold = to_gold(validate(spark, lines)).collect()
    assert sorted(r.event_id for r in gold) == sorted(f"e-{i}" for i in range(len(EDGE_CASES)))


EVENT_TIMES = [
    ("2026-11-20T13:45:12Z", "2026-11-20 13:45:12"),
    ("2026-11-20T13:45:12.3Z", "2026-11-20 13:45:12.300000"),
    ("2026-11-20T13:45:12.345Z", "2026-11-20 13:45:12.345000"),
    ("2026-11-20T13:45:12.123456Z", "2026-11-20 13:45:12.123456"),  # Python's isoformat()
    ("2026-11-20T13:45:12.123456+00:00", "2026-11-20 13:45:12.123456"),
    ("2026-11-20T13:45:12.123456789Z", "2026-11-20 13:45:12.123456"),  # nanoseconds: cut to micros
    ("2026-11-20T13:45:12+0000", "2026-11-20 13:45:12"),
    ("2026-11-20T13:45:12.5+0530", "2026-11-20 08:15:12.500000"),
    ("2026-11-20T13:45:12-08:00", "2026-11-20 21:45:12"),
]


@pytest.mark.parametrize("ansi", ["false", "true"])
def test_event_times_with_one_to_nine_fraction_digits_and_any_iso_offset_are_accepted(spark, ansi):
    lines = [variant(event_id=text, event_time=text) for text, _ in EVENT_TIMES]
    spark.conf.set("spark.sql.ansi.enabled", ansi)
    try:
        rows = to_gold(validate(spark, lines)).collect()
    finally:
        spark.conf.set("spark.sql.ansi.enabled", "false")
    assert sorted((r.event_id, str(r.event_time)) for r in rows) == sorted(EVENT_TIMES)


UNUSABLE_EVENT_TIMES = [
    "2026-11-20T13:45:12",  # no offset: local time of an unknown zone
    "2026-11-20T13:45:12.Z",
    "2026-11-20T13:45:12.1234567891Z",  # ten fraction digits
    "2026-11-20T13:45:12+05",
    "2026-11-20T13:45:12+00:00:00",
    "2026-11-20T13:45:12+00:00Z",
]


def test_event_times_without_a_usable_offset_or_fraction_are_unparseable(spark):
    lines = [variant(event_id=text, event_time=text) for text in UNUSABLE_EVENT_TIMES]
    rows = validate(spark, lines).collect()
    assert sorted((r.event_id, r.reason) for r in rows) == sorted(
        (text, "unparseable_event_time") for text in UNUSABLE_EVENT_TIMES
    )


def lines_from_bytes(spark, lines: list[bytes]):
    """A `value` column holding these exact bytes, as Spark's text source would (no UTF-8 check)."""
    frame = spark.createDataFrame([(line,) for line in lines], "raw binary")
    return frame.select(F.col("raw").cast("string").alias("value"))


def test_a_line_with_invalid_utf8_is_quarantined_with_its_exact_bytes_and_readable_text(spark):
    bad = variant(city="Berlin").encode().replace(b"Berlin", b"Berl\xffin")
    good = variant(event_id="e-2", city="Zürich").encode()
    validated = with_reasons(parse_lines(lines_from_bytes(spark, [bad, good])))
    (row,) = to_quarantine(validated).collect()
    assert (row.reason, row.reasons, bytes(row.raw_bytes)) == ("invalid_utf8", ["invalid_utf8"], bad)
    assert row.raw_line == bad.decode("utf-8", errors="replace")
    assert [r.location_city for r in to_gold(validated).collect()] == ["Zürich"]


def test_a_byte_order_mark_before_a_line_is_not_part_of_the_json(spark):
    assert to_gold(validate(spark, ["\ufeff" + variant()])).count() == 1


def test_range_bounds_are_inclusive(spark):
    values = [-40.0, 85.0, 0.0]
    lines = [variant(event_id=str(value), temperature_c=value) for value in values]
    assert sorted(r.temperature_c for r in to_gold(validate(spark, lines)).collect()) == sorted(values)


CITY_SPELLINGS = [
    ("  ZÜRICH ", "Zürich"),
    ("são paulo", "São Paulo"),
    ("\tkRAKÓW", "Kraków"),
    ("new   york", "New York"),
    ("ŁÓDŹ\u00a0", "Łódź"),
    ("Berlin", "Berlin"),
]


def test_city_names_are_trimmed_and_title_cased_unicode_aware(spark):
    frame = spark.createDataFrame([(raw,) for raw, _ in CITY_SPELLINGS], "city string")
    rows = frame.select("city", normalise_city(F.col("city")).alias("c")).collect()
    assert sorted((r.city, r.c) for r in rows) == sorted(CITY_SPELLINGS)


def test_valid_records_become_typed_gold_rows(spark):
    gold = to_gold(validate(spark, [variant(city=" berlin ", country=" de")]))
    expected = spark.createDataFrame(
        [
            Row(
                event_id="e-1",
                device_id="dev-000001",
                temperature_c=21.4,
                humidity_pct=48.2,
                battery_pct=87,
                firmware="1.4.2",
                location_country="DE",
                location_lat=52.52,
                location_lon=13.405,
                location_city="Berlin",
            )
        ],
        "event_id string, device_id string, temperature_c double, humidity_pct double, battery_pct int, "
        "firmware string, location_country string, location_lat double, location_lon double, location_city string",
    )
    assert list(gold.columns) == list(GOLD_COLUMNS)
    assertDataFrameEqual(gold.select(*expected.columns), expected)
    row = gold.first()
    assert str(row.event_time) == "2026-11-20 13:45:12.345000" and str(row.date) == "2026-11-20"
    assert dict(gold.dtypes)["battery_pct"] == "int" and dict(gold.dtypes)["event_time"] == "timestamp"


def test_numbers_sent_as_strings_or_padded_with_spaces_are_accepted(spark):
    line = (
        '{"event_id": "e-2", "device_id": "d", "event_time": "2026-11-20T00:00:00Z", "location": {"city": "Oslo",'
        ' "country": "NO", "lat": "59.9", "lon": 10.7},'
        ' "temperature_c":   -3.5, "humidity_pct": "80", "battery_pct": 5}'
    )
    (row,) = to_gold(validate(spark, [line])).collect()
    assert (row.temperature_c, row.humidity_pct, row.location_lat) == (-3.5, 80.0, 59.9)


def test_rules_give_the_same_result_under_ansi_mode(spark):
    """Spark 4 runs with ANSI mode on: no rule may raise on bad input, and results must not change."""
    lines = [
        variant(),
        variant(temperature_c="N/A"),
        variant(event_time="2026-13-45T99:61:00Z"),
        variant(battery_pct=1e30),
        variant(lat="north"),
        '{"event_id": ',
        variant(battery_pct=99.0),
        # the strict-JSON checks and the composition of a decomposed city (Spark 4's element_at
        # failed on a null index under ANSI, which left Zürich decomposed)
        variant(event_id="e-t") + " junk",
        variant(event_id="e-d").replace('"lat": 52.52', '"lat": 52.52, "lat": 1.0'),
        variant(event_id=12345),
        variant(event_id="e-nfd", city="Zu\u0308rich"),
    ]
    results = {}
    for ansi in ("false", "true"):
        spark.conf.set("spark.sql.ansi.enabled", ansi)
        try:
            validated = validate(spark, lines)
            results[ansi] = (
                sorted(tuple(r) for r in to_quarantine(validated).select("reason", "raw_line").collect()),
                sorted(tuple(r) for r in to_gold(validated).collect()),
            )
        finally:
            spark.conf.set("spark.sql.ansi.enabled", "false")
    assert results["true"] == results["false"]
    assert [r[0] for r in results["true"][0]] == sorted(
        [
            "non_numeric_reading",
            "unparseable_event_time",
            "battery_out_of_range",
            "invalid_coordinates",
            "malformed_json",
            "trailing_content",
            "duplicate_key",
            "non_string_event_id",
        ]
    )
    assert len(results["true"][1]) == 3
    assert any("Z\u00fcrich" in row for row in results["true"][1]), "the decomposed city was not composed"


def with_key_first(key: str, value: object, line: str) -> str:
    """The line with `"key": value` written once more before its other keys (a duplicate key)."""
    return "{" + json.dumps(key) + ": " + json.dumps(value) + ", " + line[1:]


def mismatches(expected: dict, found: dict) -> list:
    """The cases whose outcome is not the expected one, each with what was expected and found."""
    return [(case, want, found.get(case)) for case, want in expected.items() if found.get(case) != want]


def test_a_line_that_is_not_one_strict_json_object_is_quarantined_with_its_reason(spark):
    """JSON Lines is one RFC 8259 object per line: Spark's parser reads the first object of a line
    and ignores the rest, takes single quotes and NaN, and keeps the last of two equal keys."""
    line = variant()
    expected = {
        line + " junk": "trailing_content",
        line + ",": "trailing_content",
        line + variant(event_id="e-2"): "trailing_content",
        line + " " + variant(event_id="e-2"): "trailing_content",
        line + ", " + variant(event_id="e-2"): "trailing_content",
        line + "]": "trailing_content",
        line + '], [{"event_id": "e-2"}': "trailing_content",
        line + "\u2028": "trailing_content",  # not JSON whitespace, though Java's `$` matches before it
        line + "\u00a0": "trailing_content",
        variant(firmware="{") + " }": "trailing_content",
        line.replace('"', "'"): "malformed_json",
        variant(temperature_c=float("nan")): "malformed_json",
        variant(humidity_pct=float("inf")): "malformed_json",
        variant(lat=float("-inf")): "malformed_json",
        with_key_first("event_id", "e-0", line): "duplicate_key",
        with_key_first("temperature_c", 99.0, line): "duplicate_key",
        with_key_first("firmware", None, line): "duplicate_key",
        line.replace('"city": "Berlin"', '"city": "Paris", "city": "Berlin"'): "duplicate_key",
        line.replace('"lat": 52.52', '"lat": 52.52, "lat": 1.0'): "duplicate_key",
    }
    rows = to_quarantine(validate(spark, list(expected))).collect()
    found = {row.raw_line: (row.reason, row.reasons) for row in rows}
    assert len(rows) == len(expected)
    assert mismatches({case: (reason, [reason]) for case, reason in expected.items()}, found) == []


def test_a_single_strict_object_with_braces_in_its_strings_or_extra_keys_is_valid(spark):
    lines = {
        "padded": variant(event_id="padded") + "  \t",
        "indented": "  " + variant(event_id="indented"),
        "braces": variant(event_id="braces", firmware="} {"),
        "objects-in-a-string": variant(event_id="objects-in-a-string", firmware='{"a": 1}, {"b": 2}'),
        "braced-city": variant(event_id="braced-city", city="{Berlin}"),
        "nested-extra": variant(event_id="nested-extra").replace(
            '"firmware"', '"extra": {"k": [1, {"x": 2}]}, "firmware"'
        ),
        "other-case-key": variant(event_id="other-case-key").replace('"firmware"', '"Event_Id": "other", "firmware"'),
        "null-battery": variant(event_id="null-battery", battery_pct=None),
        "no-location-key-twice": variant(event_id="no-location-key-twice").replace('"lon"', '"Lon": 1, "lon"'),
    }
    validated = validate(spark, list(lines.values()))
    assert to_quarantine(validated).select("reason", "raw_line").collect() == []
    assert sorted(row.event_id for row in to_gold(validated).collect()) == sorted(lines)


def test_a_reading_is_taken_only_when_it_is_a_json_number_or_a_string_holding_one(spark):
    """Spark casts with Java's number syntax (`21.5d` is 21.5, `0x1.8p4` is 24.0)."""
    rejected = ["21.5d", "21.5D", "2f", "0x1.8p4", "0x10", "1_000", "+1", ".5", "5.", "0012", "1e", "1e5.5"]
    rejected += ["\u0661", "21.5\n", "21.5\u2028", "\t21.5"]
    accepted = {" 21.5 ": 21.5, "-0.5": -0.5, "2.15E1": 21.5, "1e1": 10.0, "0": 0.0}
    lines = [variant(event_id=f"bad-{index}", temperature_c=value) for index, value in enumerate(rejected)]
    lines += [variant(event_id=f"good-{index}", temperature_c=value) for index, value in enumerate(accepted)]
    lines.append(variant(event_id="json-spellings").replace("21.4", "2.14e1").replace("48.2", "4820E-2"))
    validated = validate(spark, lines)

    reasons = {row.event_id: row.reason for row in validated.collect()}
    readings = {row.event_id: (row.temperature_c, row.humidity_pct) for row in to_gold(validated).collect()}
    expected_reasons = {f"bad-{index}": "non_numeric_reading" for index in range(len(rejected))}
    expected_readings = {f"good-{index}": (reading, 48.2) for index, reading in enumerate(accepted.values())}
    expected_readings["json-spellings"] = (21.4, 48.2)
    assert mismatches(expected_reasons, reasons) == []
    assert readings == expected_readings


def test_an_event_id_is_taken_only_when_it_is_a_json_string(spark):
    """`12345` and `"12345"` must not become one id (nor `true` and `"true"`)."""
    not_strings = [12345, -1.5, 0, True, False, None, {"x": 1}, [1], [], {}]
    lines = {json.dumps(event_id): variant(event_id=event_id) for event_id in not_strings if event_id is not None}
    lines["1e400"] = variant(event_id="1e400").replace('"1e400"', "1e400")
    lines["12345678901234567890123"] = variant(event_id=12345678901234567890123)
    strings = ["12345", "-1.5", "true", "false", '{"x": 1}', "[1]", '"quoted"', "1e400", "NaN", "Infinity"]
    validated = validate(spark, list(lines.values()) + [variant(event_id=event_id) for event_id in strings])

    found = {row.raw_line: row.reason for row in to_quarantine(validated).collect()}
    assert mismatches({line: "non_string_event_id" for line in lines.values()}, found) == []
    assert sorted(row.event_id for row in to_gold(validated).collect()) == sorted(strings)


CITIES_WITH_MARKS = ["Zürich", "ZÜRICH", "São Paulo", "Kraków", "Łódź", "Đà Nẵng", "Hà Nội", "Ǘlm", "Ἀθῆναι"]
CITIES_WITH_MARKS += ["Ōsaka", "がっこう", "서울", "광주광역시", "ঢাকা", "திருச்சி"]


def test_a_city_spelled_decomposed_lands_in_the_partition_of_its_composed_spelling(spark):
    """macOS and some keyboards send `u` + U+0308 for `ü` (NFD): without composing it Zürich would be
    two partitions (and two cities in every query)."""
    lines = []
    for index, city in enumerate(CITIES_WITH_MARKS):
        lines.append(variant(event_id=f"nfc-{index}", city=unicodedata.normalize("NFC", city)))
        lines.append(variant(event_id=f"nfd-{index}", city=unicodedata.normalize("NFD", city)))
    cities = {row.event_id: row.location_city for row in to_gold(validate(spark, lines)).collect()}
    composed = {f"nfd-{index}": cities.get(f"nfc-{index}") for index in range(len(CITIES_WITH_MARKS))}
    assert mismatches(composed, cities) == []
    assert [city for city in cities.values() if not unicodedata.is_normalized("NFC", city)] == []


def test_combining_marks_are_composed_as_unicode_nfc_composes_them(spark):
    raw = [
        "e\u0302\u0301",  # partly composed: ê + acute is ế
        "\u00ea\u0301",
        "a\u0323\u0302",  # two marks in canonical order: ậ
        "a\u0316\u0301",  # a mark of a lower class between does not block: á + U+0316
        "a\u0301\u0301",  # nor does one of the same class: á + U+0301
        "x\u0301",  # no composed form: stays as it is
        "\u0301Berlin",  # a mark with no base
        "\u0915\u093c",  # क़ is excluded from composition: NFC keeps it decomposed
        "\U0001109a",  # a composed character outside the BMP (Kaithi)
        "\U00011099\U000110ba",
        "\u1100\u1161\u11a8",  # Hangul jamo L V T: 각
        "\uac00\u11a8",  # LV + T
        "\u1100\u1100\u1161",  # L L V: only the second L composes
        "\u09c7\u09be",  # Bengali ো from its two parts (both of class 0, so only when adjacent)
        "\u09c7\u09bc\u09be",  # ... which a nukta between blocks
        "\ue000\u0301",  # a private-use character the table numbers itself with
    ] + [unicodedata.normalize("NFD", city) for city in CITIES_WITH_MARKS]
    frame = spark.createDataFrame(
        [(text, unicodedata.normalize("NFC", text)) for text in raw], "raw string, nfc string"
    )
    rows = frame.select("raw", normalise_city(F.col("raw")).alias("composed"), F.initcap("nfc").alias("expected"))
    assert [
        (ascii(row.raw), row.composed, row.expected) for row in rows.collect() if row.composed != row.expected
    ] == []
