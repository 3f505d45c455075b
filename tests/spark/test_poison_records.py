"""Records the sink could not write, through the real job: each is quarantined with a reason
and the batch succeeds; what is written stays readable by DuckDB and pyarrow."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.spark.lake_readers import read_every_file
from tests.spark.test_streaming_job import run_job, table_of

pytestmark = pytest.mark.spark


def event(event_id: str, when: str = "2026-11-20T10:00:00Z", city: str = "Berlin") -> bytes:
    record = {
        "event_id": event_id,
        "device_id": "dev-000001",
        "event_time": when,
        "location": {"city": city, "country": "DE", "lat": 52.5, "lon": 13.4},
        "temperature_c": 20.0,
        "humidity_pct": 50.0,
        "battery_pct": 90,
        "firmware": "1.4.2",
    }
    return json.dumps(record, ensure_ascii=False).encode()


POISON = {
    "year-one": (event("year-one", when="0001-01-01T00:00:00Z"), "implausible_event_time"),
    "long-city": (event("long-city", city="Ü" * 150), "unusable_city"),
    "escaped-city": (event("escaped-city", city="#" * 90), "unusable_city"),
    "nul-city": (event("nul-city", city="Ber\u0000lin"), "unusable_city"),
    "bad-utf8": (event("bad-utf8", city="Berl-in").replace(b"-", b"\xff"), "invalid_utf8"),
    "bad-utf8-raw": (b"\xc3\x28 not json \xa0\xa1", "invalid_utf8"),
}


def test_records_the_sink_cannot_write_are_quarantined_and_the_batch_succeeds(spark, tmp_path):
    lines = [event("fine")] + [line for line, _ in POISON.values()]
    (tmp_path / "bronze").mkdir()
    (tmp_path / "bronze" / "part-0.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    summary = run_job(spark, tmp_path)

    expected: dict = {}
    for _, reason in POISON.values():
        expected[reason] = expected.get(reason, 0) + 1
    quarantined = spark.table(table_of(tmp_path, "quarantine")).collect()
    assert dict(Counter(r.reason for r in quarantined)) == expected
    assert summary["gold_rows"] == 1
    assert read_every_file(tmp_path, "gold") == 1
    assert read_every_file(tmp_path, "quarantine") == len(POISON)
    stored = {bytes(r.raw_bytes) for r in quarantined}
    assert stored == {line for line, _ in POISON.values()}
