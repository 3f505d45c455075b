"""`iotpipe query`: SQL over a local lake, with the tables Athena has on AWS.

Each table of `iotpipe.lake.tables` becomes a DuckDB view of the same name and the same columns
(names, types, order). Gold and the quarantine are Iceberg tables: their views read exactly the
data files of the table's current snapshot, planned from its metadata (`iotpipe.lake.iceberg`, the
same reader VerifyGold uses), so a file a crashed commit left behind is never part of the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iotpipe.lake import tables
from iotpipe.lake.iceberg import DATA, TableNotFound, live_files, read_metadata
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import GOLD, QUARANTINE, RUN_QUARANTINE, RUNS, Table, sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.settings import Settings


class QueryError(ValueError):
    """The SQL could not be run (a syntax error, an unknown table or column)."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed_columns(table: Table, source: str = "") -> str:
    prefix = f"{source}." if source else ""
    return ", ".join(
        f"CAST({prefix}{_quote(c.name)} AS {tables.duckdb_type(table, c)}) AS {_quote(c.name)}"
        for c in table.all_columns
    )


def _empty_view(connection, table: Table) -> None:
    nulls = ", ".join(f"CAST(NULL AS {tables.duckdb_type(table, c)}) AS {_quote(c.name)}" for c in table.all_columns)
    connection.execute(f"CREATE VIEW {_quote(table.name)} AS SELECT {nulls} WHERE false")


def table_files(settings: Settings, table: Table) -> list[str]:
    """The data files of the table's current snapshot (none before the job created it)."""
    storage = LocalStorage()
    glue = LocalGlue(sqlite_path(settings.catalog_uri) or "")
    try:
        metadata = read_metadata(storage, glue, settings.catalog_database, table.name)
    except TableNotFound:
        return []
    current = metadata.snapshots.get(metadata.current_snapshot_id) if metadata.current_snapshot_id else None
    if current is None:
        return []
    files = live_files(storage, current)
    deletes = [f.uri for f in files if f.content != DATA]
    if deletes:
        raise QueryError(
            f"{table.name} has row-level delete files ({deletes[0]}, ...), which this reader does not apply: "
            "query it with Spark, or rewrite them (CALL system.rewrite_data_files with delete-file-threshold 1)"
        )
    return sorted(f.uri for f in files)


def _iceberg_view(connection, table: Table, settings: Settings) -> None:
    """A view over the Iceberg table's current data files."""
    files = table_files(settings, table)
    if not files:
        _empty_view(connection, table)
        return
    paths = ", ".join("'" + uri.replace("'", "''") + "'" for uri in files)
    connection.execute(
        f"CREATE VIEW {_quote(table.name)} AS SELECT {_typed_columns(table)} "
        f"FROM read_parquet([{paths}], hive_partitioning = false, union_by_name = true)"
    )


def _json_view(connection, table: Table, folder: str) -> None:
    """A view over one line of JSON per row (the run tables ReportStatus writes)."""
    if not any(Path(folder).glob("*.json")):
        _empty_view(connection, table)
        return
    columns = "{" + ", ".join(f"'{c.name}': '{tables.duckdb_type(table, c)}'" for c in table.all_columns) + "}"
    pattern = str(Path(folder) / "*.json").replace("'", "''")
    connection.execute(
        f"CREATE VIEW {_quote(table.name)} AS SELECT {_typed_columns(table)} "
        f"FROM read_json('{pattern}', format = 'newline_delimited', columns = {columns})"
    )


def connect(lake: str):
    """A DuckDB connection with a view for every analysis table of the lake."""
    import duckdb

    settings = Settings.for_local_lake(str(Path(lake).resolve()))
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for table in (GOLD, QUARANTINE):
        _iceberg_view(connection, table, settings)
    for table in (RUNS, RUN_QUARANTINE):
        _json_view(connection, table, tables.run_rows_uri(settings.runs_uri, table))
    return connection


def run_query(lake: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of `sql` over the lake's tables."""
    import duckdb

    if not sql.strip():
        raise QueryError("no SQL statement given")
    connection = connect(lake)
    try:
        result = connection.execute(sql)
    except duckdb.Error as error:
        raise QueryError(str(error).strip()) from None
    if result is None or result.description is None:  # a comment only, or a statement with no result
        return [], []
    return [d[0] for d in result.description], result.fetchall()


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain text table: a header, a rule, one line per row; numbers right-aligned."""
    cells = [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
