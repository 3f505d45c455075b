"""The analysis tables: one definition (iotpipe.catalog) that the template's Glue tables, the
Spark job's columns, the run rows and the local views all agree with; partition registration
that is idempotent and within the API's bounds."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from iotpipe import catalog, glue_registration
from iotpipe.catalog import GOLD, QUARANTINE, RUN_QUARANTINE, RUNS, TABLES
from iotpipe.glue_registration import publish_compactions, register_run, relocate_partitions
from iotpipe.local.api_shapes import BoundsCheckedClient
from iotpipe.local.iam.stack import TEMPLATE, parse_template
from iotpipe.manifests import MANIFEST_FOLDER
from iotpipe.query import connect
from iotpipe.storage import LocalStorage

FORMATS = {
    "parquet": ("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe", "parquet"),
    "json": ("org.openx.data.jsonserde.JsonSerDe", "json"),
}


def template_tables() -> dict[str, dict]:
    resources = parse_template(TEMPLATE.read_text())["Resources"]
    inputs = [r["Properties"]["TableInput"] for r in resources.values() if r["Type"] == "AWS::Glue::Table"]
    return {table["Name"]: table for table in inputs}


def as_pairs(columns) -> list[tuple[str, str]]:
    return [(c.name, c.type) if isinstance(c, catalog.Column) else (c["Name"], c["Type"]) for c in columns]


def test_the_templates_glue_tables_are_the_catalogs_tables():
    tables = template_tables()
    assert sorted(tables) == sorted(t.name for t in TABLES)
    for table in TABLES:
        glue = tables[table.name]
        assert as_pairs(glue["StorageDescriptor"]["Columns"]) == as_pairs(table.columns), table.name
        assert as_pairs(glue.get("PartitionKeys", [])) == as_pairs(table.partition_keys), table.name
        serde, classification = FORMATS[table.data_format]
        assert glue["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == serde
        assert glue["Parameters"]["classification"] == classification
        location = glue["StorageDescriptor"]["Location"]
        reads_manifests = location.get("Fn::Sub", "").endswith(f"/{MANIFEST_FOLDER}/")
        assert reads_manifests == table.reads_manifests, table.name
        if table.reads_manifests:
            assert {k: glue["StorageDescriptor"][k] for k in catalog.SYMLINK_STORAGE} == catalog.SYMLINK_STORAGE


def test_the_catalogs_sink_tables_have_the_spark_jobs_columns():
    from spark.transforms import GOLD_COLUMNS, QUARANTINE_COLUMNS

    assert [c.name for c in GOLD.all_columns] == list(GOLD_COLUMNS)
    assert sorted(c.name for c in QUARANTINE.all_columns) == sorted(QUARANTINE_COLUMNS)


def test_the_local_views_have_the_catalogs_names_columns_and_types(tmp_path):
    connection = connect(str(tmp_path))
    for table in TABLES:
        described = connection.execute(f'DESCRIBE "{table.name}"').fetchall()
        assert [(row[0], row[1]) for row in described] == [
            (c.name, catalog.duckdb_type(c.type)) for c in table.all_columns
        ], table.name


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
    rows = catalog.run_rows(report())
    assert [sorted(row) for row in rows[RUNS.name]] == [sorted(c.name for c in RUNS.columns)]
    assert all(sorted(row) == sorted(c.name for c in RUN_QUARANTINE.columns) for row in rows[RUN_QUARANTINE.name])
    assert rows[RUNS.name][0]["started_at"] == "2024-05-01 10:00:00.000"
    assert [(r["reason"], r["records"]) for r in rows[RUN_QUARANTINE.name]] == [("bad_json", 1), ("missing_city", 1)]


def test_run_rows_written_by_report_status_are_read_back_by_the_local_views(tmp_path):
    runs = tmp_path / "artifacts" / "runs"
    glue_registration.write_run_rows(LocalStorage(), str(runs), report())
    glue_registration.write_run_rows(LocalStorage(), str(runs), report(run_id="run-2", status="FAILED",
                                                                      error={"Error": "SparkStepFailed"}))  # fmt: skip
    connection = connect(str(tmp_path))
    assert connection.execute("select run_id, status, error, input_records from runs order by run_id").fetchall() == [
        ("run-1", "SUCCEEDED", None, 10),
        ("run-2", "FAILED", "SparkStepFailed", 10),
    ]
    assert connection.execute("select sum(records) from run_quarantine").fetchone() == (4,)


@pytest.mark.parametrize(
    "city,directory",
    [
        ("Berlin", "Berlin"),
        ("São Paulo", "São Paulo"),
        ("St. John's", "St. John%27s"),
        ("A:B=C?#%", "A%3AB%3DC%3F%23%25"),
        ('[x]^{y}*"z\\', "%5Bx%5D%5E%7By}%2A%22z%5C"),
    ],
)
def test_city_names_escape_and_unescape_as_spark_writes_them(city, directory):
    assert catalog.escape_path_name(city) == directory
    assert catalog.partition_values(GOLD, f"date=2024-05-01/location_city={directory}") == ["2024-05-01", city]


def test_a_directory_that_is_not_a_partition_of_the_table_is_refused():
    with pytest.raises(ValueError, match="not a partition directory"):
        catalog.partition_values(GOLD, "location_city=Berlin/date=2024-05-01")


@pytest.fixture
def glue():
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": "iotpipe"})
        for table in (GOLD, QUARANTINE):
            client.create_table(
                DatabaseName="iotpipe",
                TableInput={
                    "Name": table.name,
                    "StorageDescriptor": {"Columns": [{"Name": c.name, "Type": c.type} for c in table.columns]},
                    "PartitionKeys": [{"Name": c.name, "Type": c.type} for c in table.partition_keys],
                },
            )
        yield BoundsCheckedClient(client)


def verification_document(tmp_path, cities: int) -> str:
    gold = {f"date=2024-05-0{1 + i % 3}/location_city=City {i}%27s": 10 for i in range(cities)}
    document = {"gold": {"rows_by_partition": gold}, "quarantine": {"rows_by_partition": {"reason=bad_json": 2}}}
    path = tmp_path / "verification.json"
    path.write_text(json.dumps(document))
    return str(path)


def all_partitions(glue, table: str) -> list[tuple]:
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName="iotpipe", TableName=table)
    return sorted(
        (tuple(p["Values"]), p["StorageDescriptor"]["Location"]) for page in pages for p in page["Partitions"]
    )


def test_registration_registers_every_committed_partition_in_calls_of_at_most_100(glue, tmp_path):
    document = verification_document(tmp_path, cities=250)
    sinks = {"gold": "s3://gold/iot_transformed", "quarantine": "s3://gold/quarantine"}
    outcome = glue_registration.register_run(glue, "iotpipe", LocalStorage(), document, sinks)
    assert outcome.summary()["errors"] == 0 and outcome.registered == {"gold": 250, "quarantine": 1}
    registered = all_partitions(glue, "gold")
    assert len(registered) == 250
    location = "s3://gold/iot_transformed/_symlink_format_manifest/date=2024-05-02/location_city=City 1%27s/"
    assert (("2024-05-02", "City 1's"), location) in registered


def test_registering_the_same_run_again_changes_nothing_and_is_no_error(glue, tmp_path):
    document = verification_document(tmp_path, cities=120)
    sinks = {"gold": "s3://gold/iot_transformed", "quarantine": "s3://gold/quarantine"}
    glue_registration.register_run(glue, "iotpipe", LocalStorage(), document, sinks)
    before = all_partitions(glue, "gold")
    again = glue_registration.register_run(glue, "iotpipe", LocalStorage(), document, sinks)
    assert again.summary()["errors"] == 0 and again.registered == {"gold": 0, "quarantine": 0}
    assert again.already_registered == {"gold": 120, "quarantine": 1}
    assert all_partitions(glue, "gold") == before


def test_the_local_glue_client_refuses_more_than_100_partitions_per_call_as_aws_does(glue):
    from botocore.exceptions import ClientError

    inputs = [{"Values": ["2024-05-01", f"c{i}"]} for i in range(101)]
    with pytest.raises(ClientError, match="at most 100"):
        glue.batch_create_partition(DatabaseName="iotpipe", TableName="gold", PartitionInputList=inputs)


def test_only_report_status_may_register_partitions_and_only_in_the_stacks_tables(glue):
    from botocore.exceptions import ClientError

    from iotpipe.local import iam

    authorized = iam.AuthorizedGlue(glue, iam.Authorizer(iam.load_stack()))
    inputs = [{"Values": ["2024-05-01", "Berlin"]}]
    with iam.acting_as("ReportStatusFunction"):
        authorized.batch_create_partition(DatabaseName="iotpipe", TableName="gold", PartitionInputList=inputs)
        with pytest.raises(ClientError, match="AccessDenied"):
            authorized.batch_create_partition(DatabaseName="iotpipe", TableName="runs", PartitionInputList=inputs)
    with iam.acting_as("VerifyGoldFunction"), pytest.raises(ClientError, match="AccessDenied"):
        authorized.batch_create_partition(DatabaseName="iotpipe", TableName="gold", PartitionInputList=inputs)


def test_a_compaction_moves_registered_partitions_and_registers_new_ones_at_their_new_folder(glue, tmp_path):
    sink = "s3://gold/iot_transformed"
    document = verification_document(tmp_path, 150)
    register_run(glue, "iotpipe", LocalStorage(), document, {"gold": sink, "quarantine": "s3://gold/quarantine"})
    registered = [f"date=2024-05-0{1 + i % 3}/location_city=City {i}%27s" for i in range(0, 150, 2)]
    new = ["date=2024-05-09/location_city=St. John%27s"]
    moves = {p: f"{sink}/_symlink_format_manifest/compacted-7/{p}/" for p in registered + new}
    assert relocate_partitions(glue, "iotpipe", GOLD, sink, moves) == 76
    located = dict(all_partitions(glue, "gold"))
    assert located[("2024-05-09", "St. John's")] == moves[new[0]]
    assert located[("2024-05-01", "City 0's")] == moves["date=2024-05-01/location_city=City 0%27s"]
    assert (
        located[("2024-05-02", "City 1's")]
        == f"{sink}/_symlink_format_manifest/date=2024-05-02/location_city=City 1%27s/"
    )
    assert len(located) == 151
    # What ReportStatus registers afterwards leaves a moved partition where it is.
    register_run(glue, "iotpipe", LocalStorage(), document, {"gold": sink, "quarantine": "s3://gold/quarantine"})
    assert dict(all_partitions(glue, "gold"))[("2024-05-01", "City 0's")] == located[("2024-05-01", "City 0's")]


def test_publication_without_a_compaction_step_says_so_and_waits_out_a_live_driver(tmp_path):
    plan = SimpleNamespace(run_id="r1", lake=SimpleNamespace(checkpoint=str(tmp_path / "cp"), gold=str(tmp_path / "g")))
    alone = publish_compactions(LocalStorage(), plan, "", lambda: None, compacted=False)
    assert alone["spark"] == {"skipped": glue_registration.NO_COMPACTION_STEP} and alone["published"] == []
    held = publish_compactions(LocalStorage(), plan, "", lambda: None, compacted=False, no_driver_writes=lambda: False)
    assert held["waiting"] == ["a driver may still run"]


def test_publish_compaction_events_of_an_older_definition_count_as_after_a_compaction_step():
    from functions.publish_compaction.app import PublishEvent

    plan = {"run_id": "r1"}
    assert PublishEvent.model_construct(plan=plan, step_error=None).compaction_step_ran()
    assert not PublishEvent.model_construct(plan=plan, step_error=None, step=None).compaction_step_ran()
    assert PublishEvent.model_construct(plan=plan, step_error=None, step={"step_id": "s-1"}).compaction_step_ran()
    assert PublishEvent.model_construct(plan=plan, step_error={"Error": "x"}, step=None).compaction_step_ran()
