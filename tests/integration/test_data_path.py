"""The data path end to end, as a user runs it: `iotpipe generate`, then `iotpipe transform`
(a real spark-submit), checked against the generator's ground truth with an independent reader."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from generator.shards import read_manifests, summarise
from iotpipe.sink_log import committed_files, data_files
from iotpipe.storage import LocalStorage

pytestmark = pytest.mark.spark


def iotpipe(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "iotpipe.cli", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"iotpipe {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def transform(lake: Path, bronze: Path, *extra: str, check: bool = True) -> tuple[int, dict | None]:
    result = iotpipe(
        "transform",
        "--bronze",
        str(bronze),
        "--gold",
        str(lake / "gold"),
        "--quarantine",
        str(lake / "quarantine"),
        "--checkpoint",
        str(lake / "checkpoint"),
        "--max-files-per-trigger",
        "1",
        "--json",
        *extra,
        check=check,
    )
    report = json.loads(result.stdout)
    return report["exit_code"], report["summary"]


def gold_table(lake: Path) -> str:
    return f"read_parquet('{lake}/gold/*/*/*.parquet', hive_partitioning = true)"


def committed_table(sink: Path) -> str:
    """The sink's committed files only, as Spark itself reads them (via _spark_metadata)."""
    files = [f.uri for f in committed_files(LocalStorage(), str(sink))]
    return f"read_parquet({files!r}, hive_partitioning = true)"


def quarantine_counts(lake: Path) -> dict:
    rows = duckdb.execute(
        f"select reason, count(*) from read_parquet('{lake}/quarantine/*/*.parquet', "
        "hive_partitioning = true) group by reason"
    ).fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def bronze(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("shared") / "bronze" / "raw"
    iotpipe(
        "generate",
        "--out",
        str(raw),
        "--size",
        "8MiB",
        "--shards",
        "2",
        "--object-size",
        "2MiB",
        "--seed",
        "5",
    )
    return raw


@pytest.fixture(scope="module")
def uninterrupted(bronze, tmp_path_factory) -> tuple[Path, dict]:
    lake = tmp_path_factory.mktemp("uninterrupted")
    exit_code, summary = transform(lake, bronze)
    assert exit_code == 0
    return lake, summary


def test_ground_truth_equals_gold_plus_quarantine_plus_duplicates(bronze, uninterrupted):
    _, summary = uninterrupted
    truth = summarise(read_manifests(str(bronze)))
    assert summary["input_rows"] == truth["records"]
    assert summary["gold_rows"] == truth["gold"]
    assert summary["quarantined_by_reason"] == {k: v for k, v in truth["quarantined"].items() if v}
    assert summary["duplicates"] == truth["duplicates"]
    assert summary["gold_rows"] + summary["quarantined_rows"] + summary["duplicates"] == truth["records"]


def test_an_independent_reader_finds_exactly_the_expected_gold_rows_and_no_duplicate_ids(bronze, uninterrupted):
    lake, _ = uninterrupted
    truth = summarise(read_manifests(str(bronze)))
    rows, ids = duckdb.execute(f"select count(*), count(distinct event_id) from {gold_table(lake)}").fetchone()
    assert rows == ids == truth["gold"]
    assert quarantine_counts(lake) == {k: v for k, v in truth["quarantined"].items() if v}


def test_gold_is_snappy_parquet_partitioned_by_date_and_city(uninterrupted):
    lake, _ = uninterrupted
    files = list((lake / "gold").glob("date=*/location_city=*/*.snappy.parquet"))
    assert files
    cities = {p.parent.name.split("=", 1)[1] for p in files}
    assert {"São Paulo", "Zürich", "Kraków"} <= cities
    codec = duckdb.execute(f"select distinct compression from parquet_metadata('{files[0]}')").fetchall()
    assert codec == [("SNAPPY",)]


def test_a_crash_mid_batch_then_a_rerun_gives_the_same_gold_as_an_uninterrupted_run(bronze, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    exit_code, _ = transform(tmp_path, bronze, "--fault", "crash-mid-batch:2", check=False)
    assert exit_code != 0
    gold_log = tmp_path / "gold" / "_spark_metadata"
    assert not (gold_log / "2").exists()
    exit_code, _ = transform(tmp_path, bronze)
    assert exit_code == 0
    for sink in ("gold", "quarantine"):
        recovered, expected = committed_table(tmp_path / sink), committed_table(reference / sink)
        assert duckdb.execute(f"select * from {recovered} except all select * from {expected}").fetchall() == []
        assert duckdb.execute(f"select * from {expected} except all select * from {recovered}").fetchall() == []
    rows, ids = duckdb.execute(
        f"select count(*), count(distinct event_id) from {committed_table(tmp_path / 'gold')}"
    ).fetchone()
    assert rows == ids


def test_files_left_by_the_crashed_attempt_are_told_apart_by_the_sink_log(bronze, tmp_path):
    transform(tmp_path, bronze, "--fault", "crash-mid-batch:1", check=False)
    storage = LocalStorage()
    leftovers = {
        sink: set(data_files(storage, str(tmp_path / sink)))
        - {f.uri for f in committed_files(storage, str(tmp_path / sink))}
        for sink in ("gold", "quarantine")
    }
    assert any(leftovers.values())


def test_a_rerun_after_success_writes_nothing(bronze, tmp_path):
    shutil.copytree(bronze.parent.parent, tmp_path, dirs_exist_ok=True)
    lake = tmp_path
    assert transform(lake, lake / "bronze" / "raw")[0] == 0
    before = sorted(str(p) for p in (lake / "gold").rglob("*") if p.is_file())
    exit_code, summary = transform(lake, lake / "bronze" / "raw")
    assert exit_code == 0 and (summary["batches"], summary["gold_rows"]) == (0, 0)
    assert sorted(str(p) for p in (lake / "gold").rglob("*") if p.is_file()) == before


def test_fail_after_commit_exits_non_zero_with_complete_output(bronze, tmp_path):
    exit_code, summary = transform(tmp_path, bronze, "--fault", "fail-after-commit", check=False)
    assert exit_code != 0
    truth = summarise(read_manifests(str(bronze)))
    assert summary["gold_rows"] == truth["gold"]
    assert duckdb.execute(f"select count(*) from {gold_table(tmp_path)}").fetchone()[0] == truth["gold"]
