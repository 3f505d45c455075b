"""What the Spark job leaves in a lake, made without Spark: the tables' commits and the checkpoint.

`JobCommits` creates the job's Iceberg tables in the lake's local catalog (iotpipe.lake.tables:
the same columns, partitioning and properties) with PyIceberg, an independent Iceberg writer, and
commits a batch to each table as spark/job.py does: Gold, the quarantine, then the seen-id store,
each commit tagged with the query and the batch (and the counts), the last one with the run the
batch belongs to; then the query's checkpoint records the batch (offsets, commits). The Lambdas'
code (VerifyGold, AssessStepFailure, ReportStatus) then reads real Iceberg metadata, manifests and
data files. The Spark tests check the job writes the same tags (tests/spark).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa

from iotpipe.lake.checkpoint import query_checkpoint
from iotpipe.lake.iceberg import (
    BATCH_ID,
    BATCH_STARTED_MS,
    DUPLICATES,
    EXECUTION,
    GOLD_SNAPSHOT,
    INPUT_ROWS,
    QUERY_ID,
    RUN_ID,
    VALID_ROWS,
)
from iotpipe.lake.tables import GOLD, ICEBERG_TABLES, QUARANTINE, SEEN_IDS, SPARK_CATALOG, Table, sqlite_path
from iotpipe.run.settings import Settings


def _iceberg_type(spark_type: str, next_id):
    from pyiceberg import types as T

    simple = {
        "string": T.StringType(),
        "timestamp": T.TimestamptzType(),
        "double": T.DoubleType(),
        "int": T.IntegerType(),
        "bigint": T.LongType(),
        "date": T.DateType(),
        "binary": T.BinaryType(),
    }
    if spark_type == "array<string>":
        return T.ListType(element_id=next_id(), element_type=T.StringType(), element_required=False)
    return simple[spark_type]


def iceberg_schema(table: Table):
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    ids = iter(range(1000, 2000))
    fields = [
        NestedField(i + 1, c.name, _iceberg_type(c.type, lambda: next(ids)), required=False)
        for i, c in enumerate(table.columns)
    ]
    return Schema(*fields)


def partition_spec(table: Table, schema):
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform, IdentityTransform

    fields = []
    for i, term in enumerate(table.partitioning):
        if term.startswith("day("):
            column, transform, name = term[4:-1], DayTransform(), f"{term[4:-1]}_day"
        else:
            column, transform, name = term, IdentityTransform(), term
        fields.append(PartitionField(schema.find_field(column).field_id, 1000 + i, transform, name))
    return PartitionSpec(*fields)


class JobCommits:
    """The job's commits on a local lake (see the module's docstring)."""

    def __init__(self, settings: Settings, query_id: str | None = None) -> None:
        from pyiceberg.catalog.sql import SqlCatalog

        self.settings = settings
        path = sqlite_path(settings.catalog_uri)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.catalog = SqlCatalog(SPARK_CATALOG, uri=f"sqlite:///{path}", warehouse=f"file://{Path(path).parent}")
        self.query_id = query_id or str(uuid.uuid4())
        self.checkpoint = Path(query_checkpoint(settings.checkpoint_uri))
        self._ensure_tables()

    def _location(self, table: Table) -> str:
        from iotpipe.lake.tables import seen_ids_location

        return {GOLD.name: self.settings.gold_uri, QUARANTINE.name: self.settings.quarantine_uri,
                SEEN_IDS.name: seen_ids_location(self.settings.checkpoint_uri)}[table.name]  # fmt: skip

    def _ensure_tables(self) -> None:
        database = self.settings.catalog_database
        if (database,) not in self.catalog.list_namespaces():
            self.catalog.create_namespace(database)
        existing = {name for _, name in self.catalog.list_tables(database)}
        for table in ICEBERG_TABLES:
            if table.name in existing:
                continue
            schema = iceberg_schema(table)
            self.catalog.create_table(
                f"{database}.{table.name}",
                schema=schema,
                partition_spec=partition_spec(table, schema),
                location="file://" + self._location(table),
                properties=table.properties,
            )
        self.checkpoint.mkdir(parents=True, exist_ok=True)
        metadata = self.checkpoint / "metadata"
        if metadata.exists():
            self.query_id = json.loads(metadata.read_text())["id"]
        else:
            metadata.write_text(json.dumps({"id": self.query_id}))

    def table(self, table: Table):
        return self.catalog.load_table(f"{self.settings.catalog_database}.{table.name}")

    def gold_rows(self, rows: dict[tuple[str, str], int], batch: int) -> pa.Table:
        schema = self.table(GOLD).schema().as_arrow()
        columns = {name: [] for name in schema.names}
        moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
        for (day, city), count in rows.items():
            for i in range(count):
                values = {"event_id": f"b{batch}-{day}-{city}-{i}", "device_id": "dev-000001", "event_time": moment,
                          "temperature_c": 20.0, "humidity_pct": 50.0, "battery_pct": 90, "firmware": "1.0",
                          "location_country": "CZ", "location_lat": 50.0, "location_lon": 14.0,
                          "source_file": "bronze/part.jsonl", "date": date.fromisoformat(day),
                          "location_city": city}  # fmt: skip
                for name in schema.names:
                    columns[name].append(values[name])
        return pa.table(columns, schema=schema)

    def quarantine_rows(self, rows: dict[str, int], batch: int) -> pa.Table:
        schema = self.table(QUARANTINE).schema().as_arrow()
        taken = datetime(2026, 1, 2, tzinfo=timezone.utc)
        columns = {name: [] for name in schema.names}
        for reason, count in rows.items():
            for i in range(count):
                values = {"reasons": [reason], "event_id": f"q{batch}-{i}", "raw_line": "{", "raw_bytes": b"{",
                          "source_file": "bronze/part.jsonl", "reason": reason, "quarantined_at": taken}  # fmt: skip
                for name in schema.names:
                    columns[name].append(values[name])
        return pa.table(columns, schema=schema)

    def commit_batch(
        self,
        batch: int,
        run_id: str,
        gold: dict[tuple[str, str], int] | None = None,
        quarantined: dict[str, int] | None = None,
        duplicates: int = 0,
        execution: str = "",
        tables: tuple[str, ...] = ("gold", "quarantine", "seen_ids"),
        query_commit: bool = True,
        seen_ids_added: int | None = None,
    ) -> None:
        """One batch as the job commits it: the tables named (in the job's order), then the query's
        commit. `seen_ids_added` makes the store's entry disagree with Gold's commit."""
        gold, quarantined = gold or {}, quarantined or {}
        input_rows = sum(gold.values()) + sum(quarantined.values()) + duplicates
        tags = {QUERY_ID: self.query_id, BATCH_ID: str(batch)}
        counted = {**tags, INPUT_ROWS: str(input_rows), BATCH_STARTED_MS: str(int(datetime.now().timestamp() * 1000))}
        (self.checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
        (self.checkpoint / "offsets" / str(batch)).write_text("v1\n{}\n")
        if "gold" in tables:
            valid = sum(gold.values()) + duplicates
            properties = {**counted, VALID_ROWS: str(valid), DUPLICATES: str(duplicates)}
            self.table(GOLD).append(self.gold_rows(gold, batch), snapshot_properties=properties)
        if "quarantine" in tables:
            self.table(QUARANTINE).append(self.quarantine_rows(quarantined, batch), snapshot_properties=counted)
        if "seen_ids" in tables:
            gold_commit = self.table(GOLD).current_snapshot()
            ids = sum(gold.values()) if seen_ids_added is None else seen_ids_added
            keys = pa.table({"id_key_a": list(range(ids)), "id_key_b": [batch] * ids,
                             "arrival_date": [date(2026, 1, 2)] * ids},
                            schema=self.table(SEEN_IDS).schema().as_arrow())  # fmt: skip
            owner = {RUN_ID: run_id, EXECUTION: execution, GOLD_SNAPSHOT: str(gold_commit.snapshot_id)}
            self.table(SEEN_IDS).append(keys, snapshot_properties={**tags, **owner})
        if query_commit:
            (self.checkpoint / "commits").mkdir(parents=True, exist_ok=True)
            (self.checkpoint / "commits" / str(batch)).write_text("v1\n{}\n")
