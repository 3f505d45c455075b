"""`iotpipe query`: SQL over a local lake, with the tables Athena has on AWS.

Each table of `iotpipe.catalog` becomes a DuckDB view of the same name and the same columns
(names, types, order). Gold and the quarantine read only the files their sink committed (the
`_spark_metadata` log, `iotpipe.sink_log`): a file a crashed attempt left behind is not part of
the table, as a plain glob would make it. Partition values come from the directory names,
unescaped as Spark escaped them, not from DuckDB's own Hive parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iotpipe import catalog
from iotpipe.catalog import GOLD, QUARANTINE, RUN_QUARANTINE, RUNS, Table
from iotpipe.settings import Settings
from iotpipe.sink_log import committed_files
from iotpipe.storage import LocalStorage


class QueryError(ValueError):
    """The SQL could not be run (a syntax error, an unknown table or column)."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed_columns(table: Table, source: str = "") -> str:
    prefix = f"{source}." if source else ""
    return ", ".join(
        f"CAST({prefix}{_quote(c.name)} AS {catalog.duckdb_type(c.type)}) AS {_quote(c.name)}"
        for c in table.all_columns
    )


def _empty_view(connection, table: Table) -> None:
    nulls = ", ".join(f"CAST(NULL AS {catalog.duckdb_type(c.type)}) AS {_quote(c.name)}" for c in table.all_columns)
    connection.execute(f"CREATE VIEW {_quote(table.name)} AS SELECT {nulls} WHERE false")


def _sink_view(connection, table: Table, sink_uri: str) -> None:
    """A view over the sink's committed Parquet files, partition values from their directories."""
    files = committed_files(LocalStorage(), sink_uri)
    if not files:
        _empty_view(connection, table)
        return
    root = sink_uri.rstrip("/") + "/"
    keys = [k.name for k in table.partition_keys]
    mapping = f"{table.name}__files"
    connection.execute(
        f"CREATE TEMP TABLE {_quote(mapping)} (path VARCHAR, "
        + ", ".join(f"{_quote(c.name)} {catalog.duckdb_type(c.type)}" for c in table.partition_keys)
        + ")"
    )
    rows = []
    for file in files:
        relative_dir = file.uri[len(root) :].rsplit("/", 1)[0] if file.uri.startswith(root) else ""
        rows.append([file.uri, *catalog.partition_values(table, relative_dir)])
    connection.executemany(f"INSERT INTO {_quote(mapping)} VALUES ({', '.join('?' * (1 + len(keys)))})", rows)
    paths = ", ".join("'" + f.uri.replace("'", "''") + "'" for f in files)
    data = ", ".join(_quote(c.name) for c in table.columns)
    connection.execute(
        f"CREATE VIEW {_quote(table.name)} AS SELECT {_typed_columns(table, 's')} FROM ("
        f"SELECT d.* EXCLUDE (filename), {', '.join('m.' + _quote(k) for k in keys)} "
        f"FROM (SELECT {data}, filename FROM read_parquet([{paths}], filename = true, hive_partitioning = false)) d "
        f"JOIN {_quote(mapping)} m ON d.filename = m.path) s"
    )


def _json_view(connection, table: Table, folder: str) -> None:
    """A view over one line of JSON per row (the run tables ReportStatus writes)."""
    if not any(Path(folder).glob("*.json")):
        _empty_view(connection, table)
        return
    columns = "{" + ", ".join(f"'{c.name}': '{catalog.duckdb_type(c.type)}'" for c in table.all_columns) + "}"
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
    _sink_view(connection, GOLD, settings.gold_uri)
    _sink_view(connection, QUARANTINE, settings.quarantine_uri)
    for table in (RUNS, RUN_QUARANTINE):
        _json_view(connection, table, catalog.run_rows_uri(settings.runs_uri, table))
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
