"""Read a lake's Parquet the way its consumers do (DuckDB, pyarrow), every file on its own."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def parquet_files(table: Path) -> list[Path]:
    return sorted(p for p in table.rglob("*.parquet") if "_spark_metadata" not in p.parts)


def read_every_file(table: Path) -> int:
    """Read every Parquet file of `table` with pyarrow and DuckDB (which refuses invalid UTF-8
    in a string column); return the row count, which both must agree on."""
    rows = 0
    with duckdb.connect() as connection:
        for path in parquet_files(table):
            arrow_rows = pq.read_table(path).num_rows
            (duck_rows,) = connection.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
            connection.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
            assert arrow_rows == duck_rows, path
            rows += arrow_rows
    return rows
