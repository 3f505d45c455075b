"""The data path end to end, as a user runs it: `iotpipe generate`, then `iotpipe transform`
(a real spark-submit), checked against the generator's ground truth with independent readers:
PyIceberg plans each table's current snapshot from the catalog `iotpipe transform` keeps beside
its checkpoint, DuckDB reads the files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from generator.shards import read_manifests, summarise
from iotpipe.lake.iceberg import BATCH_ID, metadata_location
from iotpipe.lake.tables import DATABASE, LOCAL_CATALOG_FILE
from iotpipe.local.catalog import LocalGlue

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


def table(lake: Path, name: str):
    """The table as its catalog (`iotpipe transform`'s default, beside the checkpoint) points to it."""
    from pyiceberg.table import StaticTable

    pointer = metadata_location(LocalGlue(str(lake / "checkpoint" / LOCAL_CATALOG_FILE[-1])), DATABASE, name)
    assert pointer, f"no table {name} in {lake}'s catalog"
    return StaticTable.from_metadata(pointer)


def rows(lake: Path, name: str):
    """The table's rows (an Arrow table), from the data files of its current snapshot."""
    return table(lake, name).scan().to_arrow()


def committed_files(lake: Path, name: str) -> set[str]:
    return {
        task.file.file_path.removeprefix("file:").removeprefix("//") for task in table(lake, name).scan().plan_files()
    }


def files_on_disk(lake: Path, name: str) -> set[str]:
    return {str(path) for path in (lake / name / "data").rglob("*.parquet")}


def committed_batches(lake: Path, name: str) -> set[int]:
    return {int(s.summary[BATCH_ID]) for s in table(lake, name).snapshots() if s.summary.get(BATCH_ID) is not None}


def quarantine_counts(lake: Path) -> dict:
    quarantined = rows(lake, "quarantine")  # noqa: F841 - DuckDB reads the local variable
    return dict(duckdb.sql("select reason, count(*) from quarantined group by reason").fetchall())


@pytest.fixture(scope="module")
def bronze(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("shared") / "bronze" / "raw"
    iotpipe(
        "generate",
        "--out",
        str(raw),
        "--size",
        "4MiB",
        "--shards",
        "2",
        "--object-size",
        "1MiB",
        "--seed",
        "5",
        "--days",
        "2",
    )
    return raw


@pytest.fixture(scope="module")
def uninterrupted(bronze, tmp_path_factory) -> tuple[Path, dict]:
    lake = tmp_path_factory.mktemp("uninterrupted")
    exit_code, summary = transform(lake, bronze)
    assert exit_code == 0
    return lake, summary


def test_ground_truth_equals_gold_plus_quarantine_plus_duplicates(bronze, uninterrupted):
    lake, summary = uninterrupted
    truth = summarise(read_manifests(str(bronze)))
    assert summary["input_rows"] == truth["records"]
    assert summary["gold_rows"] == truth["gold"]
    assert summary["quarantined_rows"] == sum(truth["quarantined"].values())
    assert summary["duplicates"] == truth["duplicates"]
    assert summary["gold_rows"] + summary["quarantined_rows"] + summary["duplicates"] == truth["records"]


def test_an_independent_reader_finds_exactly_the_expected_gold_rows_and_no_duplicate_ids(bronze, uninterrupted):
    lake, _ = uninterrupted
    truth = summarise(read_manifests(str(bronze)))
    gold = rows(lake, "gold")  # noqa: F841 - DuckDB reads the local variable
    assert duckdb.sql("select count(*), count(distinct event_id) from gold").fetchall()[0] == (truth["gold"],) * 2
    assert quarantine_counts(lake) == {k: v for k, v in truth["quarantined"].items() if v}


def test_gold_is_snappy_parquet_partitioned_by_date_and_city(uninterrupted):
    lake, _ = uninterrupted
    assert [field.name for field in table(lake, "gold").spec().fields] == ["date", "location_city"]
    files = sorted(committed_files(lake, "gold"))
    assert files and all("/data/date=" in f and "/location_city=" in f for f in files)
    assert {"São Paulo", "Zürich", "Kraków"} <= set(rows(lake, "gold").column("location_city").to_pylist())
    codec = duckdb.execute("select distinct compression from parquet_metadata(?)", [files[0]]).fetchall()
    assert codec == [("SNAPPY",)]


def test_a_crash_mid_batch_then_a_rerun_gives_the_same_gold_as_an_uninterrupted_run(bronze, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    exit_code, _ = transform(tmp_path, bronze, "--fault", "crash-mid-batch:2", check=False)
    assert exit_code != 0
    assert 2 not in committed_batches(tmp_path, "gold")
    exit_code, _ = transform(tmp_path, bronze)
    assert exit_code == 0
    for name in ("gold", "quarantine"):
        # The same rows; when the pipeline took a quarantined record is each lake's own.
        recovered = rows(tmp_path, name).drop_columns(["quarantined_at"] if name == "quarantine" else [])  # noqa: F841
        expected = rows(reference, name).drop_columns(["quarantined_at"] if name == "quarantine" else [])  # noqa: F841
        assert duckdb.sql("select * from recovered except all select * from expected").fetchall() == []
        assert duckdb.sql("select * from expected except all select * from recovered").fetchall() == []
    gold = rows(tmp_path, "gold")  # noqa: F841
    count, ids = duckdb.sql("select count(*), count(distinct event_id) from gold").fetchall()[0]
    assert count == ids


def test_files_left_by_the_crashed_attempt_are_told_apart_by_the_tables_snapshots(bronze, tmp_path):
    transform(tmp_path, bronze, "--fault", "crash-mid-batch:1", check=False)
    leftovers = files_on_disk(tmp_path, "gold") - committed_files(tmp_path, "gold")
    assert leftovers and 1 not in committed_batches(tmp_path, "gold")


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
    assert rows(tmp_path, "gold").num_rows == truth["gold"]
