"""Read a lake's tables the way consumers of the files do (DuckDB, pyarrow), every data file of
the table's current snapshot on its own (as the metadata lists them: never a stray file)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from iotpipe.lake.iceberg import live_files, metadata_location
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import DATABASE, LOCAL_CATALOG_FILE
from iotpipe.local.catalog import LocalGlue
from tests.spark.test_streaming_job import metadata_of


def read_lake_table(spark, lake: Path, table: str):
    """A table of a lake built by its own spark-submit (its own catalog file, as `iotpipe run`
    makes), read by this session's Spark from the snapshot that catalog points to."""
    pointer = metadata_location(LocalGlue(str(lake.joinpath(*LOCAL_CATALOG_FILE))), DATABASE, table)
    return spark.read.format("iceberg").load(pointer)


def data_files(lake: Path, table: str) -> list[str]:
    """The data files of the table's current snapshot (none before its first commit)."""
    metadata = metadata_of(lake, table)
    current = metadata.snapshots.get(metadata.current_snapshot_id)
    return sorted(f.uri for f in live_files(LocalStorage(), current)) if current else []


def read_every_file(lake: Path, table: str) -> int:
    """Read every data file of the table with pyarrow and DuckDB (which refuses invalid UTF-8 in a
    string column); return the row count, which both must agree on."""
    rows = 0
    with duckdb.connect() as connection:
        for path in data_files(lake, table):
            arrow_rows = pq.read_table(path, partitioning=None).num_rows
            (duck_rows,) = connection.execute("SELECT count(*) FROM read_parquet(?)", [path]).fetchone()
            connection.execute("SELECT * FROM read_parquet(?)", [path]).fetchall()
            assert arrow_rows == duck_rows, path
            rows += arrow_rows
    return rows
