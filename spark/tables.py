"""The job's Iceberg tables: the catalog, their idempotent creation, and each batch's commit, tagged.

Every commit the job makes carries the streaming query's id and the batch id as snapshot
properties (`iotpipe.lake.iceberg`), with the batch's counts. Before a table is written for a
batch, its main line of history is searched for that tag: a replayed batch (the driver died
after a table's commit and before the query's) never appends twice, to any table. The search
walks back from the newest snapshot and stops at the first commit of an earlier batch of the
same query, so it costs a snapshot or two, whatever the history.

The catalog is the Glue Data Catalog on AWS (EMR's own Iceberg) and Iceberg's JDBC catalog on a
SQLite file locally (`iotpipe.lake.tables.local_catalog_uri`); `--catalog` says which.

Python 3.9 syntax: shipped to EMR with the job.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from pyspark.sql import DataFrame, SparkSession

from iotpipe.lake.tables import ICEBERG_TABLES, SPARK_CATALOG, Table, TableLocations, sqlite_path
from iotpipe.lake.tags import BATCH_ID, QUERY_ID

EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
GLUE = "glue"


def session_extensions() -> Dict[str, str]:
    """What the SparkSession must be built with (procedures such as rewrite_data_files need it)."""
    return {"spark.sql.extensions": EXTENSIONS}


def catalog_conf(catalog: str, warehouse: str) -> Dict[str, str]:
    """Spark settings of the job's catalog: `glue`, or `jdbc:sqlite:<file>` for a local lake."""
    prefix = f"spark.sql.catalog.{SPARK_CATALOG}"
    # No cached tables: the query's batches commit through a session (and catalog) of their own,
    # and every reader must see those commits at once.
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog", f"{prefix}.warehouse": warehouse,
            f"{prefix}.cache-enabled": "false"}  # fmt: skip
    if catalog == GLUE:
        conf[f"{prefix}.type"] = "glue"
    elif sqlite_path(catalog):
        # SQLite's write-ahead log: a reader (a connection of the pool, Python's sqlite3) never
        # blocks a commit, which waits rather than fails while another commit holds the lock.
        conf.update({f"{prefix}.type": "jdbc", f"{prefix}.uri": catalog + "?journal_mode=WAL", f"{prefix}.clients": "1",
                     f"{prefix}.jdbc.schema-version": "V1", f"{prefix}.jdbc.busy_timeout": "60000"})  # fmt: skip
    else:
        raise ValueError(f"unknown catalog {catalog!r}: 'glue' or 'jdbc:sqlite:<file>'")
    return conf


def configure_catalog(spark: SparkSession, catalog: str, warehouse: str, io_impl: Optional[str] = None) -> None:
    """Set the catalog on a running session (Spark makes a catalog on its first use)."""
    local = sqlite_path(catalog)
    if local:
        os.makedirs(os.path.dirname(local), exist_ok=True)
    for key, value in catalog_conf(catalog, warehouse).items():
        spark.conf.set(key, value)
    if io_impl:
        spark.conf.set(f"spark.sql.catalog.{SPARK_CATALOG}.io-impl", io_impl)


def warehouse_of(gold_uri: str) -> str:
    """The catalog's warehouse: the folder above Gold's (tables are always given their location)."""
    parent = gold_uri.rstrip("/").rsplit("/", 1)[0]
    return _ddl_location(parent if "://" in parent else os.path.abspath(parent))


def qualified(database: str, table: Table) -> str:
    return f"{SPARK_CATALOG}.{database}.{table.name}"


def _plain(uri: str) -> str:
    """A location without its `file:` scheme and trailing slash, to compare two spellings."""
    for scheme in ("file://", "file:"):
        if uri.startswith(scheme):
            uri = uri[len(scheme) :]
            break
    return uri.rstrip("/")


def _ddl_location(uri: str) -> str:
    """A table location as Iceberg keeps it: an s3:// URI, or a local path as a file: URI."""
    return uri if "://" in uri else "file:" + uri


class TableElsewhere(RuntimeError):
    """A table of the catalog lives somewhere else than this deployment's (or this lake's) prefix."""


def ensure_tables(spark: SparkSession, database: str, locations: TableLocations, local: bool) -> None:
    """Create the namespace (locally) and every table that does not exist yet, never altering one;
    refuse a table that lives elsewhere (a lake folder copied or moved: its catalog names the
    original's files, where this job would otherwise write)."""
    if local:
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {SPARK_CATALOG}.{database}")
    for table in ICEBERG_TABLES:
        columns = ", ".join(f"`{c.name}` {c.type}" for c in table.columns)
        partitioned = f" PARTITIONED BY ({', '.join(table.partitioning)})" if table.partitioning else ""
        properties = ", ".join(f"'{k}'='{v}'" for k, v in sorted(table.properties.items()))
        location = _ddl_location(locations.of(table)).replace("'", "\\'")
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {qualified(database, table)} ({columns}) USING iceberg{partitioned} "
            f"LOCATION '{location}' TBLPROPERTIES ({properties})"
        )
        found = IcebergTable(spark, database, table).java().location()
        if _plain(found) != _plain(locations.of(table)):
            raise TableElsewhere(
                f"the catalog's table {qualified(database, table)} lives at {found}, not at {locations.of(table)}: "
                "a lake folder copied or moved keeps its catalog's paths to the original. Run on the original, "
                "or start a new lake (on S3, buckets are not renamed either)"
            )


class IcebergTable:
    """One of the job's tables, through Iceberg's Java API for what Spark SQL does not say:
    which snapshot holds a batch's commit."""

    def __init__(self, spark: SparkSession, database: str, table: Table) -> None:
        self.spark, self.table, self.name = spark, table, qualified(database, table)
        self._java = None

    def java(self):
        if self._java is None:
            jvm = self.spark.sparkContext._jvm
            self._java = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(self.spark._jsparkSession, self.name)
        self._java.refresh()
        return self._java

    def committed(self, query_id: str, batch_id: int):
        """The batch's snapshot on the main line (a Java Snapshot), or None if it never committed here."""
        table = self.java()
        snapshot = table.currentSnapshot()
        while snapshot is not None:
            summary = snapshot.summary()
            if summary.get(QUERY_ID) == query_id and summary.get(BATCH_ID) is not None:
                found = int(summary.get(BATCH_ID))
                if found == batch_id:
                    return snapshot
                if found < batch_id:
                    return None
            parent = snapshot.parentId()
            snapshot = table.snapshot(parent) if parent is not None else None
        return None

    def append(self, frame: DataFrame, properties: Dict[str, str]) -> None:
        """Append `frame` in one commit carrying `properties` (an empty frame commits too: the
        batch's evidence exists in every table whatever it wrote)."""
        writer = frame.writeTo(self.name)
        for key, value in properties.items():
            writer = writer.option(f"snapshot-property.{key}", value)
        writer.append()

    def rows_added_by(self, snapshot) -> DataFrame:
        """The rows one snapshot appended (an incremental read from its parent)."""
        reader = self.spark.read.format("iceberg")
        parent = snapshot.parentId()
        if parent is None:
            return reader.option("snapshot-id", snapshot.snapshotId()).load(self.name)
        return (
            reader.option("start-snapshot-id", parent).option("end-snapshot-id", snapshot.snapshotId()).load(self.name)
        )

    def has_tagged_commits(self) -> bool:
        """Whether any batch of any query committed here (a checkpoint that is gone while its
        tables remain would number its batches from 0 again)."""
        table = self.java()
        snapshot = table.currentSnapshot()
        while snapshot is not None:
            if snapshot.summary().get(BATCH_ID) is not None:
                return True
            parent = snapshot.parentId()
            snapshot = table.snapshot(parent) if parent is not None else None
        return False
