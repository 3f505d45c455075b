"""The lake's tables, defined once (iotpipe.lake.tables): the template's Glue tables of the run
history, the Spark job's columns, the run rows and the local views all agree with it; and the
local catalog the Lambdas read (iotpipe.local.catalog) answers as Glue's GetTable does."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, ParamValidationError

from iotpipe.lake import tables
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import GOLD, ICEBERG_TABLES, QUARANTINE, RUN_QUARANTINE, RUNS, SEEN_IDS, TABLES, sqlite_path
from iotpipe.local import iam
from iotpipe.local.catalog import LocalGlue
from iotpipe.local.iam.stack import TEMPLATE, parse_template
from iotpipe.query import connect
from iotpipe.run.report import write_run_rows
from iotpipe.run.settings import Settings
from tests.lakes import JobCommits

JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"


def template_tables() -> dict[str, dict]:
    resources = parse_template(TEMPLATE.read_text())["Resources"]
    inputs = [r["Properties"]["TableInput"] for r in resources.values() if r["Type"] == "AWS::Glue::Table"]
    return {table["Name"]: table for table in inputs}


def as_pairs(columns) -> list[tuple[str, str]]:
    return [(c.name, c.type) if isinstance(c, tables.Column) else (c["Name"], c["Type"]) for c in columns]


# ---------------------------------------------------------------- the template and the job
def test_the_templates_glue_tables_are_the_run_history_tables_and_the_job_creates_the_others():
    found = template_tables()
    assert sorted(found) == sorted(t.name for t in TABLES if not t.is_iceberg) == ["run_quarantine", "runs"]
    for table in (RUNS, RUN_QUARANTINE):
        glue = found[table.name]
        assert as_pairs(glue["StorageDescriptor"]["Columns"]) == as_pairs(table.columns), table.name
        assert glue.get("PartitionKeys", []) == []
        assert glue["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == JSON_SERDE
        assert glue["Parameters"]["classification"] == "json"
        location = glue["StorageDescriptor"]["Location"]["Fn::Sub"]
        assert location == tables.run_rows_uri("s3://${ArtifactsBucket}/runs", table) + "/", table.name
    assert {t.name for t in ICEBERG_TABLES} == {"gold", "quarantine", "seen_ids"}
    assert all(t.is_iceberg for t in ICEBERG_TABLES) and not (set(found) & {t.name for t in ICEBERG_TABLES})


def test_the_lambdas_read_the_glue_catalog_and_the_database_the_tables_are_in():
    stack = iam.load_stack()
    environment = stack.resolve(stack.resources["VerifyGoldFunction"]["Properties"]["Environment"]["Variables"])
    settings = Settings.from_env({k: str(v) for k, v in environment.items()})
    database = stack.resolve(stack.resources["RunsTable"]["Properties"]["DatabaseName"])
    assert settings.catalog_uri == "glue" and settings.catalog_database == str(database)


def test_the_tables_have_the_spark_jobs_columns_in_its_order():
    from spark.transforms import GOLD_COLUMNS, QUARANTINE_COLUMNS

    assert [c.name for c in GOLD.all_columns] == list(GOLD_COLUMNS)
    assert [c.name for c in QUARANTINE.all_columns] == list(QUARANTINE_COLUMNS)


def test_every_partition_column_is_a_column_of_its_table():
    for table in ICEBERG_TABLES:
        names = {c.name for c in table.columns}
        sources = [term[4:-1] if term.startswith("day(") else term for term in table.partitioning]
        assert sources and set(sources) <= names, table.name
    assert QUARANTINE.partitioning == ("reason", "day(quarantined_at)")
    assert SEEN_IDS.partitioning == ("arrival_date",)


# ---------------------------------------------------------------- the local views (`iotpipe query`)
def described(connection, table) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in connection.execute(f'DESCRIBE "{table.name}"').fetchall()]


def expected(connection, table) -> list[tuple[str, str]]:
    """Each column with its DuckDB type, as DuckDB itself spells it in DESCRIBE."""
    spelled = lambda t: connection.execute(f"SELECT typeof(CAST(NULL AS {t}))").fetchone()[0]  # noqa: E731
    return [(c.name, spelled(tables.duckdb_type(table, c))) for c in table.all_columns]


@pytest.fixture(scope="module")
def committed_lake(tmp_path_factory):
    """A lake with one batch of every table, as the job commits it."""
    root = tmp_path_factory.mktemp("lake")
    settings = Settings.for_local_lake(str(root))
    JobCommits(settings).commit_batch(0, "run-1", gold={("2026-01-01", "Oslo"): 3, ("2026-01-02", "Lyon"): 2},
                                      quarantined={"malformed_json": 2}, duplicates=1)  # fmt: skip
    return root


def test_the_local_views_of_an_empty_lake_have_every_tables_columns_and_types(tmp_path):
    connection = connect(str(tmp_path))
    for table in TABLES:
        assert described(connection, table) == expected(connection, table), table.name
        assert connection.execute(f'SELECT count(*) FROM "{table.name}"').fetchone() == (0,)


def test_the_local_views_read_the_iceberg_tables_with_their_columns_and_types(committed_lake):
    connection = connect(str(committed_lake))
    for table in TABLES:
        assert described(connection, table) == expected(connection, table), table.name
    assert connection.execute("SELECT date, location_city, count(*) FROM gold GROUP BY ALL ORDER BY 1").fetchall() == [
        (date(2026, 1, 1), "Oslo", 3),
        (date(2026, 1, 2), "Lyon", 2),
    ]
    assert connection.execute("SELECT reason, reasons, count(*) FROM quarantine GROUP BY ALL").fetchall() == [
        ("malformed_json", ["malformed_json"], 2)
    ]


def test_a_data_file_no_snapshot_references_is_not_part_of_the_local_view(committed_lake):
    """What a crashed commit leaves in the table's folder is no row of the table."""
    folder = next(p for p in (committed_lake / "gold" / "iot_transformed" / "data").rglob("*.parquet")).parent
    stray = folder / "00000-0-crashed-attempt.parquet"
    pq.write_table(pa.table({"event_id": ["stray"]}), stray)
    try:
        assert connect(str(committed_lake)).execute("SELECT count(*) FROM gold").fetchone() == (5,)
    finally:
        stray.unlink()


# ---------------------------------------------------------------- the run rows
def report(**overrides) -> dict:
    values = {
        "run_id": "run-1",
        "status": "SUCCEEDED",
        "trigger": "console",
        "records": {"input": 10, "gold": 7, "quarantined": 2, "duplicates": 1},
        "quarantined_by_reason": {"missing_city": 1, "bad_json": 1},
        "gold_partitions": 3,
        "reconciliation": {"reconciles": True},
        "attempts": 1,
        "started_at": "2024-05-01T10:00:00+00:00",
        "finished_at": "2024-05-01T10:02:30+00:00",
        "seconds": 150.0,
        "manifest": "runs/run-1.json",
    }
    return {**values, **overrides}


def test_run_rows_have_exactly_the_run_tables_columns():
    rows = tables.run_rows(report())
    assert [sorted(row) for row in rows[RUNS.name]] == [sorted(c.name for c in RUNS.columns)]
    assert all(sorted(row) == sorted(c.name for c in RUN_QUARANTINE.columns) for row in rows[RUN_QUARANTINE.name])
    assert rows[RUNS.name][0]["started_at"] == "2024-05-01 10:00:00.000"
    assert [(r["reason"], r["records"]) for r in rows[RUN_QUARANTINE.name]] == [("bad_json", 1), ("missing_city", 1)]


def test_run_rows_written_by_report_status_are_read_back_by_the_local_views(tmp_path):
    runs = tmp_path / "artifacts" / "runs"
    write_run_rows(LocalStorage(), str(runs), report())
    write_run_rows(
        LocalStorage(), str(runs), report(run_id="run-2", status="FAILED", error={"Error": "SparkStepFailed"})
    )
    connection = connect(str(tmp_path))
    assert connection.execute("select run_id, status, error, input_records from runs order by run_id").fetchall() == [
        ("run-1", "SUCCEEDED", None, 10),
        ("run-2", "FAILED", "SparkStepFailed", 10),
    ]
    assert connection.execute("select sum(records) from run_quarantine").fetchone() == (4,)


# ---------------------------------------------------------------- the local catalog, as Glue's GetTable
@pytest.fixture(scope="module")
def local_glue(committed_lake) -> LocalGlue:
    return LocalGlue(sqlite_path(Settings.for_local_lake(str(committed_lake)).catalog_uri))


def test_get_table_answers_with_the_tables_current_metadata_as_glue_does(local_glue, committed_lake):
    answer = local_glue.get_table(DatabaseName="iotpipe", Name="gold")["Table"]
    location = answer["Parameters"]["metadata_location"]
    assert answer["Name"] == "gold" and answer["Parameters"]["table_type"] == "ICEBERG"
    assert location.endswith(".metadata.json") and str(committed_lake / "gold" / "iot_transformed") in location
    current = JobCommits(Settings.for_local_lake(str(committed_lake))).table(GOLD).metadata_location
    assert location == current


@pytest.mark.parametrize(("database", "name"), [("iotpipe", "not_a_table"), ("another_database", "gold")])
def test_a_table_the_catalog_does_not_have_raises_the_exception_glues_client_names(local_glue, database, name):
    with pytest.raises(local_glue.exceptions.EntityNotFoundException) as raised:
        local_glue.get_table(DatabaseName=database, Name=name)
    assert isinstance(raised.value, ClientError) and raised.value.response["Error"]["Code"] == "EntityNotFoundException"


def test_a_lake_without_a_catalog_file_has_no_tables(tmp_path):
    glue = LocalGlue(str(tmp_path / "catalog" / "iceberg.db"))
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_table(DatabaseName="iotpipe", Name="gold")
    assert not (tmp_path / "catalog").exists(), "reading the catalog never creates it"


@pytest.mark.parametrize("request_", [{"DatabaseName": "iotpipe"}, {"DatabaseName": "iotpipe", "Name": 7},
                                      {"DatabaseName": "iotpipe", "Name": "gold", "Unknown": 1}])  # fmt: skip
def test_a_request_botocore_would_refuse_is_refused_before_the_catalog_is_read(local_glue, request_):
    with pytest.raises(ParamValidationError):
        local_glue.get_table(**request_)


def test_the_rehearsal_allows_get_table_only_to_a_role_with_glue_get_table_on_the_table(local_glue):
    glue = iam.AuthorizedGlue(local_glue, iam.Authorizer(iam.load_stack()))
    with iam.acting_as("VerifyGoldFunction"):
        assert glue.get_table(DatabaseName="iotpipe", Name="seen_ids")["Table"]["Name"] == "seen_ids"
        with pytest.raises(ClientError, match="AccessDenied.*glue:GetTable.*table/iotpipe/runs"):
            glue.get_table(DatabaseName="iotpipe", Name="runs")  # not a table whose evidence it reads
    with iam.acting_as("PlanRunFunction"), pytest.raises(ClientError) as denied:
        glue.get_table(DatabaseName="iotpipe", Name="gold")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "PlanRunFunction is not authorized to perform: glue:GetTable" in str(denied.value)
