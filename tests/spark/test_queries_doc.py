"""docs/queries.md, run by `iotpipe query` on a lake built by one small Spark run (spark-submit,
the lake's own catalog), against counts Spark computes itself from the same Iceberg snapshot. The
SQL is read from the markdown, so the documented queries are the tested ones."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import date, timezone
from pathlib import Path

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from iotpipe.cli import main
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import GOLD
from iotpipe.local.spark_submit import run_spark_job
from iotpipe.query import QueryError, run_query, table_files
from iotpipe.run.report import write_run_rows
from iotpipe.run.settings import Settings
from iotpipe.run.spark_args import SparkJobArgs
from tests.spark.lake_readers import read_lake_table

pytestmark = pytest.mark.spark

DOC = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
QUERY = re.compile(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", re.S)


def documented_queries() -> dict[str, str]:
    return dict(QUERY.findall(DOC.read_text()))


def report(run_id: str, status: str, finished_at: str, by_reason: dict[str, int]) -> dict:
    return {
        "run_id": run_id,
        "status": status,
        "trigger": "console",
        "records": {"input": 100, "gold": 90, "quarantined": sum(by_reason.values()), "duplicates": 0},
        "quarantined_by_reason": by_reason,
        "gold_partitions": 4,
        "attempts": 1,
        "started_at": finished_at.replace(":30", ":00"),
        "finished_at": finished_at,
        "seconds": 30.0,
        "error": {"Error": "SparkStepFailed"} if status == "FAILED" else None,
        "manifest": f"runs/{run_id}.json",
    }


REPORTS = [
    report("run-a", "SUCCEEDED", "2024-05-01T10:00:30+00:00", {"bad_json": 3, "missing_city": 1}),
    report("run-b", "FAILED", "2024-05-01T18:00:30+00:00", {"bad_json": 2}),
    report("run-c", "SUCCEEDED", "2024-05-02T09:00:30+00:00", {"missing_city": 5}),
]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Path:
    """A few thousand generated records through the job, and three runs' rows."""
    root = tmp_path_factory.mktemp("query-lake")
    settings = Settings.for_local_lake(str(root))
    subprocess.run([sys.executable, "-m", "iotpipe.cli", "generate", "--out", settings.bronze_uri, "--size", "1MiB",
                    "--shards", "1", "--seed", "21", "--devices", "200"],
                   check=True, capture_output=True)  # fmt: skip
    args = SparkJobArgs(bronze=settings.bronze_uri, gold=settings.gold_uri, quarantine=settings.quarantine_uri,
                        checkpoint=settings.checkpoint_uri, run_id="query-lake", catalog=settings.catalog_uri,
                        catalog_database=settings.catalog_database, shuffle_partitions=2)  # fmt: skip
    assert run_spark_job(args.to_argv(), str(root / "spark.log"), master="local[2]").succeeded
    for one in REPORTS:
        write_run_rows(LocalStorage(), settings.runs_uri, one)
    return root


def gold(spark, lake: Path):
    return read_lake_table(spark, lake, "gold")


def query(lake: Path, name: str):
    return run_query(str(lake), documented_queries()[name])[1]


def test_every_documented_query_is_tested():
    assert sorted(documented_queries()) == sorted(
        name.removeprefix("test_documented_") for name in globals() if name.startswith("test_documented_")
    )


def test_documented_readings_per_city_and_day(spark, lake):
    expected = (
        gold(spark, lake)
        .groupBy("date", "location_city")
        .agg(F.count("*").alias("n"), F.avg("temperature_c").alias("t"))
        .orderBy("date", "location_city")
        .collect()
    )
    rows = query(lake, "readings_per_city_and_day")
    assert len(expected) > 3 and sum(r.n for r in expected) > 1000
    assert [(r[0], r[1], r[2]) for r in rows] == [(e.date, e.location_city, e.n) for e in expected]
    assert all(abs(r[3] - e.t) <= 0.051 for r, e in zip(rows, expected))


def test_documented_devices_with_low_battery(spark, lake):
    latest = Window.partitionBy("device_id", "location_city").orderBy(F.col("event_time").desc())
    expected = (
        gold(spark, lake)
        .withColumn("rank", F.row_number().over(latest))
        .where("rank = 1 and battery_pct < 50")
        .orderBy("battery_pct", "device_id")
        .collect()
    )
    rows = query(lake, "devices_with_low_battery")
    assert expected
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (e.device_id, e.location_city, e.battery_pct, e.event_time.astimezone(timezone.utc)) for e in expected
    ]


def test_documented_quarantine_by_reason(spark, lake):
    quarantine = read_lake_table(spark, lake, "quarantine")
    expected = sorted(((r.reason, r["count"]) for r in quarantine.groupBy("reason").count().collect()),
                      key=lambda pair: (-pair[1], pair[0]))  # fmt: skip
    assert expected and query(lake, "quarantine_by_reason") == expected


def test_documented_quarantine_by_reason_over_time(lake):
    expected: dict[tuple, int] = {}
    for one in REPORTS:
        day = date.fromisoformat(one["finished_at"][:10])
        for reason, count in one["quarantined_by_reason"].items():
            expected[(day, reason)] = expected.get((day, reason), 0) + count
    assert query(lake, "quarantine_by_reason_over_time") == [(*key, n) for key, n in sorted(expected.items())]


def test_documented_run_history(lake):
    rows = query(lake, "run_history")
    by_start = sorted(REPORTS, key=lambda r: r["started_at"], reverse=True)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (r["run_id"], r["status"], r["records"]["input"], r["records"]["quarantined"]) for r in by_start
    ]


def test_documented_runs_not_succeeded(lake):
    assert query(lake, "runs_not_succeeded") == [("run-b", "FAILED", "SparkStepFailed", "runs/run-b.json")]


def test_orphan_parquet_files_in_gold_are_invisible_to_queries(spark, lake):
    table = lake / "gold" / "iot_transformed"
    (expected,) = run_query(str(lake), "select count(*) from gold")[1]
    committed = Path(table_files(Settings.for_local_lake(str(lake)), GOLD)[0])
    orphans = [committed.parent / "00000-99999-orphan.parquet",
               table / "data" / "date=2099-01-01" / "location_city=Nowhere" / "00000-0-orphan.parquet"]  # fmt: skip
    try:
        for orphan in orphans:  # what a crashed attempt leaves: in a known partition and in a new one
            orphan.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(committed, orphan)
        assert run_query(str(lake), "select count(*) from gold")[1] == [expected]
        assert run_query(str(lake), "select count(*) from gold where location_city = 'Nowhere'")[1] == [(0,)]
    finally:
        for orphan in orphans:
            orphan.unlink(missing_ok=True)
        shutil.rmtree(table / "data" / "date=2099-01-01", ignore_errors=True)


def test_bad_sql_is_a_clear_error_with_a_non_zero_exit_and_no_traceback(lake, capsys):
    with pytest.raises(QueryError, match="selec"):
        run_query(str(lake), "selec 1")
    assert main(["query", "--lake", str(lake), "select nothing from gold"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iotpipe query: error: ") and "nothing" in err and "Traceback" not in err
    for blank in ("", "   ", "-- only a comment"):
        assert main(["query", "--lake", str(lake), blank]) in (0, 2), blank
        assert "Traceback" not in capsys.readouterr().err


def test_the_cli_prints_a_plain_table(lake, capsys):
    assert (
        main(["query", "--lake", str(lake), "select reason, count(*) as n from quarantine group by 1 order by 1"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["reason", "n"] and set(lines[1]) <= {"-", " "} and lines[-1].endswith("rows)")
