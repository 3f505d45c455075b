"""Hostile Bronze through the real job: every line ends in Gold, in the quarantine with a reason,
or is counted as a duplicate; the counts reconcile; nothing fails; the output stays readable.

A seeded generator (no extra dependency) writes a few objects, some gzip-compressed, with odd
names and line endings. Lines that are JSON objects carry a unique tag in `firmware` (a field
no rule reads, kept in Gold as is) and an `event_id`; lines with the same `event_id` form a
group of which Gold keeps one. Every other line must be in the quarantine, matched by its bytes.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from spark.transforms import REASON_CODES
from tests.spark.lake_readers import read_every_file
from tests.spark.test_streaming_job import run_job, table_of

pytestmark = pytest.mark.spark

SEED = 20261127
LINES = 12_000
OBJECTS = ["fuzz-0.jsonl", "fuzz-1.jsonl.gz", "Fuzz 2 %+é.JSONL", "deep/fuzz-3.json", "firehose-4-2026-11-27.gz"]

CITIES = ["Berlin", "São Paulo", "Zürich", "Kraków", "Val-d'Or", "北京", "القاهرة", "Łódź", "St. John's"]
ODD_CITIES = [
    "",
    " ",
    "\t\u00a0",
    ".",
    "..",
    "%",
    "=",
    "a=b",
    "%2F",
    "Ber/lin",
    "Ber\\lin",
    "Ber\u0000lin",
    "Ber\u0007lin",
    "Ber\u2028lin",
    "__HIVE_DEFAULT_PARTITION__",
    "\u200b",
    "e\u0301",
    "🏙️ City",
    "\ufffd",
    "x" * 200,
    "x" * 201,
    "Ü" * 100,
    "Ü" * 101,
    "#" * 66,
    "#" * 67,
    "\ud800",
    "{[]}^*?:",
    "a" * 100_000,
]
TIMES = [
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00.123Z",
    "2026-11-20T10:00:00+14:00",
    "2026-11-20T10:00:00-12:00",
    "2026-11-20T10:00:00+23:59",
    "2026-11-20T10:00:00.123456789Z",
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2000-01-01T00:00:00Z",
    "2001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "+10000-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2026-02-29T00:00:00Z",
    "2026-11-20t10:00:00z",
    "2026-11-20T10:00:00",
    "2026-11-20 10:00:00Z",
    1_763_600_000,
    None,
    "",
    [],
    {"t": 1},
]
NUMBERS = [
    0,
    -0.0,
    21.5,
    "21.5",
    " 21.5 ",
    1e308,
    -1e308,
    5e-324,
    "1e400",
    "-1e400",
    12345678901234567890123,
    "NaN",
    "Infinity",
    "-Infinity",
    "0x10",
    "1_000",
    "",
    None,
    True,
    [],
    {},
    "21,5",
    "٣",
    85,
    -40,
    100,
    101,
    -1,
]
WRONG_TYPES = [None, True, 17, 1.5, [], [1, "a"], {}, {"nested": {"deeper": [1, 2]}}, "", "   "]
GARBAGE_TEXT = [
    "",
    " ",
    "\t",
    "{",
    "}",
    "[]",
    "[1,2,3]",
    "null",
    "true",
    "42",
    '"string"',
    "{}",
    "{'single': 1}",
    '{"event_id": "x"',
    "not json",
    "\ufeff",
    "\u0000\u0001\u0002",
    "{" * 5000,
    "[" * 2000 + "]" * 2000,
]


@dataclass
class Line:
    data: bytes
    tag: str | None = None  # the firmware tag, for lines that are JSON objects
    group: str | None = None  # the de-duplication key (event_id) when one is planted


class HostileLines:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0
        self.clean: list[dict] = []

    def tag(self) -> str:
        self.count += 1
        return f"fz-{self.count:06d}"

    def event(self, tag: str) -> dict:
        rng = self.rng
        return {
            "event_id": tag,
            "device_id": f"dev-{rng.randrange(1000):06d}",
            "event_time": f"2026-11-{rng.randrange(16, 24)}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
            "location": {"city": rng.choice(CITIES), "country": "de", "lat": 52.5, "lon": 13.4},
            "temperature_c": round(rng.uniform(-40, 85), 1),
            "humidity_pct": round(rng.uniform(0, 100), 1),
            "battery_pct": rng.randrange(0, 101),
            "firmware": tag,
        }

    def encode(self, record: object) -> bytes:
        text = json.dumps(record, ensure_ascii=self.rng.random() < 0.5, allow_nan=True)
        return text.encode("utf-8", errors="surrogatepass")

    def next(self) -> Line:
        rng, kind = self.rng, self.rng.random()
        tag = self.tag()
        if kind < 0.35:
            record = self.event(tag)
            self.clean.append(record)
            return Line(self.encode(record), tag, tag)
        if kind < 0.65:
            record = self.event(tag)
            for _ in range(rng.randrange(1, 4)):
                self.mutate(record)
            return Line(self.encode(record), tag, tag)
        if kind < 0.72 and self.clean:
            original = rng.choice(self.clean)
            copy = dict(original, firmware=tag)
            return Line(self.encode(copy), tag, original["event_id"])
        if kind < 0.80:
            record = self.event(tag)
            data = self.encode(record)
            return Line(self.corrupt_bytes(data), tag, tag)
        if kind < 0.85:
            record = self.event(tag)
            record["extra"] = self.nested(rng.randrange(1, 60))
            return Line(self.encode(record), tag, tag)
        if kind < 0.90:
            return Line(b"\xef\xbb\xbf" + self.encode(self.event(tag)), tag, tag)
        return Line(self.garbage())

    def not_strict_json(self) -> dict[bytes, str]:
        """Lines Spark's parser once took leniently (issue 25), each with the reason it must be
        quarantined for: one strict JSON object per line (RFC 8259), strict types inside it."""

        def text(record: dict) -> str:
            return json.dumps(record, ensure_ascii=False)

        first, second = self.event(self.tag()), self.event(self.tag())
        cases = {
            text(first) + text(second): "trailing_content",
            text(self.event(self.tag())) + " junk": "trailing_content",
            text(self.event(self.tag())) + ",": "trailing_content",
            text(self.event(self.tag())).replace('"', "'"): "malformed_json",
            '{"event_id": "fz-duplicate", ' + text(self.event(self.tag()))[1:]: "duplicate_key",
            text(dict(self.event(self.tag()), temperature_c="21.5d")): "non_numeric_reading",
            text(dict(self.event(self.tag()), humidity_pct="0x1.8p4")): "non_numeric_reading",
        }
        for event_id in (12345, True, {"x": 1}):
            cases[text(dict(self.event(self.tag()), event_id=event_id))] = "non_string_event_id"
        return {line.encode(): reason for line, reason in cases.items()}

    def spelled(self, city: str, form: str) -> Line:
        """A clean event whose city is spelled in Unicode normalisation form `form`."""
        tag = self.tag()
        record = self.event(tag)
        record["location"]["city"] = unicodedata.normalize(form, city)
        return Line(self.encode(record), tag, tag)

    def pick(self, *pools: list) -> object:
        return copy.deepcopy(self.rng.choice([value for pool in pools for value in pool]))

    def mutate(self, record: dict) -> None:
        rng = self.rng
        field = rng.choice(
            [
                "event_id",
                "device_id",
                "event_time",
                "city",
                "country",
                "lat",
                "lon",
                "temperature_c",
                "humidity_pct",
                "battery_pct",
                "location",
                "drop",
                "extra",
            ]
        )
        if not isinstance(record.get("location"), dict) and field in ("city", "lat", "lon", "country"):
            field = "location"
        if field == "event_id":
            record["event_id"] = rng.choice([None, "", "  ", f" {record['firmware']} ", f"\t{record['firmware']}"])
        elif field == "event_time":
            record["event_time"] = self.pick(TIMES)
        elif field == "city":
            record["location"]["city"] = self.pick(ODD_CITIES, WRONG_TYPES)
        elif field in ("lat", "lon", "country"):
            record["location"][field] = self.pick(NUMBERS, WRONG_TYPES)
        elif field == "location":
            record["location"] = self.pick(WRONG_TYPES)
        elif field == "drop":
            record.pop(rng.choice(["device_id", "event_time", "temperature_c", "humidity_pct", "location"]), None)
        elif field == "extra":
            record[rng.choice(["", "event_id ", "Event_Id_", "\u0000", "a" * 1000])] = self.pick(NUMBERS)
        else:
            record[field] = self.pick(NUMBERS, WRONG_TYPES)

    def nested(self, depth: int) -> object:
        value: object = "leaf"
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {"k": value}
        return value

    def corrupt_bytes(self, data: bytes) -> bytes:
        """Invalid UTF-8: a stray continuation byte, a truncated sequence, an overlong form or 0xFF."""
        bad = self.rng.choice([b"\x80", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xff", b"\xed\xa0\x80"])
        at = self.rng.randrange(len(data))
        return data[:at] + bad + data[at:]

    def garbage(self) -> bytes:
        rng = self.rng
        choice = rng.random()
        if choice < 0.4:
            return rng.choice(GARBAGE_TEXT).encode("utf-8")
        if choice < 0.7:
            return bytes(rng.choice([b for b in range(256) if b not in (10, 13)]) for _ in range(rng.randrange(1, 80)))
        if choice < 0.9:
            return self.encode(rng.choice(WRONG_TYPES + NUMBERS))
        return ("x" * rng.randrange(50_000, 200_000)).encode()


def split_like_hadoop(data: bytes) -> list[bytes]:
    """Lines as Hadoop's LineRecordReader splits them: on \\n, \\r\\n or a lone \\r."""
    lines, start, at = [], 0, 0
    while at < len(data):
        if data[at] in (10, 13):
            lines.append(data[start:at])
            at += 2 if data[at : at + 2] == b"\r\n" else 1
            start = at
        else:
            at += 1
    if start < len(data):
        lines.append(data[start:])
    return lines


def write_bronze(bronze: Path, lines: list[Line], rng: random.Random) -> None:
    per_object = -(-len(lines) // len(OBJECTS))
    for index, name in enumerate(OBJECTS):
        chunk = lines[index * per_object : (index + 1) * per_object]
        data = bytearray()
        previous_ending = b"\n"
        for position, line in enumerate(chunk):
            data += line.data
            last = position == len(chunk) - 1
            ending = rng.choice([b"\n", b"\r\n", b"\r"])
            if last and rng.random() < 0.5:
                ending = b""
            # A lone \r before an empty line would merge with its \n into one \r\n.
            next_empty = not last and not chunk[position + 1].data
            data += b"\n" if ending == b"\r" and next_empty else ending
            previous_ending = ending
        del previous_ending
        assert split_like_hadoop(bytes(data)) == [line.data for line in chunk]
        path = bronze / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(bytes(data)) if name.endswith(".gz") else bytes(data))


def test_every_hostile_line_is_in_gold_quarantined_or_a_duplicate(spark, tmp_path):
    rng = random.Random(SEED)
    generator = HostileLines(rng)
    lines = [generator.next() for _ in range(LINES)]
    # Lines carrying a Hadoop line break would be split: this test's bookkeeping is per line.
    lines = [line for line in lines if b"\n" not in line.data and b"\r" not in line.data]
    assert len(lines) >= 10_000
    not_strict = generator.not_strict_json()
    zurich = [generator.spelled("Zürich", form) for form in ("NFC", "NFD")]
    for line in [Line(data) for data in not_strict] + zurich:
        lines.insert(rng.randrange(len(lines) + 1), line)
    write_bronze(tmp_path / "bronze", lines, rng)

    summary = run_job(spark, tmp_path, max_files_per_trigger=len(OBJECTS))

    quarantine = spark.table(table_of(tmp_path, "quarantine")).select("reason", "reasons", "raw_bytes", "raw_line")
    quarantined = Counter()
    for row in quarantine.collect():
        assert row.reason in REASON_CODES and row.reasons and row.reasons[0] == row.reason
        try:
            assert row.raw_line == bytes(row.raw_bytes).decode("utf-8")
        except UnicodeDecodeError:
            assert row.reason == "invalid_utf8" and "\ufffd" in row.raw_line
        quarantined[bytes(row.raw_bytes)] += 1
        if bytes(row.raw_bytes) in not_strict:
            assert row.reasons == [not_strict[bytes(row.raw_bytes)]], row.raw_line
    assert set(not_strict) - set(quarantined) == set(), "a line that is not strict JSON was not quarantined"
    gold = spark.table(table_of(tmp_path, "gold")).select("firmware", "location_city").collect()
    gold_tags = Counter(r.firmware for r in gold)
    cities = {r.firmware: r.location_city for r in gold}
    assert [cities.get(line.tag) for line in zurich] == ["Zürich", "Zürich"]
    assert unicodedata.is_normalized("NFC", cities[zurich[1].tag])

    left_in_quarantine = Counter(quarantined)
    not_quarantined: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        if left_in_quarantine[line.data] > 0:
            left_in_quarantine[line.data] -= 1
        else:
            assert line.tag is not None, f"a line that is not an event is neither quarantined nor an event: {line}"
            not_quarantined[line.group].append(line)
    assert +left_in_quarantine == Counter(), "quarantined rows that match no Bronze line"
    assert max(gold_tags.values()) == 1
    for group, members in not_quarantined.items():
        assert len({m.tag for m in members} & set(gold_tags)) == 1, f"group {group} is not in Gold exactly once"
    duplicates = sum(len(members) - 1 for members in not_quarantined.values())
    assert sum(gold_tags.values()) == len(not_quarantined)

    for line in lines:
        try:
            line.data.decode("utf-8")
        except UnicodeDecodeError:
            assert line.tag not in gold_tags, "a line that is not UTF-8 reached Gold"
    assert summary["input_rows"] == len(lines)
    assert summary["gold_rows"] == len(not_quarantined)
    assert summary["duplicates"] == duplicates
    assert summary["quarantined_rows"] == sum(quarantined.values())
    assert summary["gold_rows"] + summary["quarantined_rows"] + summary["duplicates"] == summary["input_rows"]
    assert read_every_file(tmp_path, "gold") == summary["gold_rows"]
    assert read_every_file(tmp_path, "quarantine") == summary["quarantined_rows"]
