"""The shared Bronze rule (iotpipe.lake.bronze) on its own: names without a suffix, the job's load
path for a lake whose path holds glob characters, and objects changed after the job read them.
`tests/spark/test_bronze_objects.py` checks the same rule against what Spark really reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from iotpipe.lake.bronze import (
    CHANGED_AFTER_READ,
    changed_after_read,
    ignored_reason,
    spark_load_path,
)
from iotpipe.lake.checkpoint import read_times
from iotpipe.lake.storage import LocalStorage


def test_firehose_names_without_a_suffix_are_read():
    assert ignored_reason("2026/11/27/10/stream-1-2026-11-27-10-00-00-0b1e4c2a-9f3d-4e57-8a61-2c9d7f0e5b13") is None
    assert ignored_reason("noext") is None


def test_a_dot_anywhere_in_the_name_makes_it_a_suffix_the_rule_judges():
    assert ignored_reason("stream.v2-1-2026-11-27-10-00-00-0b1e") == "other-format"
    assert ignored_reason("notes.txt") == "other-format"
    assert ignored_reason("x.GZ") == "gzip-suffix-case"


def test_data_suffixes_match_in_ascii_case_only_as_java_regex_does():
    """Python's re folds the long s (U+017F) to `s` unless told ASCII; Spark's regex does not."""
    assert ignored_reason("x.jſonl") == "other-format"


def test_a_lake_path_with_glob_characters_is_escaped_for_spark():
    assert spark_load_path("/data/lake [1] {a,b} *?\\/bronze") == "/data/lake \\[1\\] \\{a,b\\} \\*\\?\\\\/bronze"
    assert spark_load_path("s3://bucket/raw") == "s3://bucket/raw"


def source_log(query: Path, entries: list[dict]) -> None:
    log = query / "sources" / "0" / "0"
    log.parent.mkdir(parents=True)
    log.write_text("v1\n" + "\n".join(json.dumps(e) for e in entries))


def test_an_object_rewritten_after_the_job_read_it_is_found_by_its_modification_time(tmp_path):
    bronze, query = tmp_path / "bronze", tmp_path / "checkpoint" / "transform"
    bronze.mkdir()
    kept, rewritten = bronze / "kept.jsonl", bronze / "re written.jsonl"
    for path in (kept, rewritten):
        path.write_bytes(b"{}\n")
        os.utime(path, (1_700_000_000.123, 1_700_000_000.123))
    source_log(query, [{"path": "file://" + quote(str(p)), "timestamp": 1_700_000_000_123, "batchId": 0}
                       for p in (kept, rewritten)])  # fmt: skip
    rewritten.write_bytes(b"{}\n{}\n")
    os.utime(rewritten, (1_700_000_100, 1_700_000_100))

    storage = LocalStorage()
    changed = changed_after_read(storage.list(str(bronze) + "/"), read_times(storage, str(query), str(bronze)))

    assert changed == {str(rewritten): CHANGED_AFTER_READ}
