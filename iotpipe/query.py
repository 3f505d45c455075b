"""`iotpipe query`: SQL over a local lake, with the tables Athena has on AWS.

Each table of `iotpipe.lake.tables` becomes a DuckDB view of the same name and the same columns
(names, types, order). Gold and the quarantine are Iceberg tables: their views read exactly the
data files of the table's current snapshot, planned from its metadata (`iotpipe.lake.iceberg`, the
same reader VerifyGold uses), so a file a crashed commit left behind is never part of the table.
Nothing else is registered: `show tables` lists exactly these four.

Several statements (`select 1; select 2`) run in order, each result printed after the other.
Rows come from DuckDB in chunks as it produces them: csv and json print each chunk as it comes
(a reader that stops early, `| head`, stops the query); a table needs every row's width before
its first line, so it is printed once its rows are in, at most `limit` of them.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

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
    files = sorted(str(path) for path in Path(folder).glob("*.json"))
    if not files:
        _empty_view(connection, table)
        return
    columns = "{" + ", ".join(f"'{c.name}': '{tables.duckdb_type(table, c)}'" for c in table.all_columns) + "}"
    # The files by name, not a glob: a lake path may hold glob characters (`[`, `*`, `?`).
    paths = ", ".join("'" + path.replace("'", "''") + "'" for path in files)
    connection.execute(
        f"CREATE VIEW {_quote(table.name)} AS SELECT {_typed_columns(table)} "
        f"FROM read_json([{paths}], format = 'newline_delimited', columns = {columns})"
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


FORMATS = ("table", "csv", "json")
DEFAULT_TABLE_LIMIT = 1000
CHUNK_ROWS = 1000


@dataclass
class Result:
    """One statement's result: its columns, and its rows in chunks as DuckDB produces them."""

    columns: list[str]
    chunks: Iterator[list[tuple[Any, ...]]]


def statements(sql: str) -> list[str]:
    """The SQL text's statements, as DuckDB's parser splits them (a `;` inside a string or a
    comment does not split)."""
    import duckdb

    if not sql.strip():
        raise QueryError("no SQL statement given")
    try:
        return [statement.query for statement in duckdb.extract_statements(sql)]
    except duckdb.Error as error:
        raise QueryError(str(error).strip()) from None


def results(lake: str, sql: str, limit: int | None = None) -> Iterator[Result]:
    """Each statement's result over the lake's tables, in order; a statement without rows (a
    comment, a SET) gives none. At most `limit` rows (and one more, to tell there were more)."""
    import duckdb

    texts = statements(sql)
    connection = connect(lake)
    for text in texts:
        try:
            result = connection.execute(text)
        except duckdb.Error as error:
            raise QueryError(str(error).strip()) from None
        if result is None or result.description is None:
            continue
        yield Result([d[0] for d in result.description], _chunks(result, None if limit is None else limit + 1))


def _chunks(result, limit: int | None) -> Iterator[list[tuple[Any, ...]]]:
    import duckdb

    fetched = 0
    while limit is None or fetched < limit:
        try:
            rows = result.fetchmany(CHUNK_ROWS if limit is None else min(CHUNK_ROWS, limit - fetched))
        except duckdb.Error as error:
            raise QueryError(str(error).strip()) from None
        if not rows:
            return
        fetched += len(rows)
        yield rows


def run_query(lake: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of the last statement of `sql` that has a result (none: `[], []`)."""
    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for result in results(lake, sql):
        columns, rows = result.columns, [row for chunk in result.chunks for row in chunk]
    return columns, rows


def print_results(lake: str, sql: str, fmt: str, limit: int | None, out: TextIO) -> None:
    """Each statement's result on `out`, in `fmt`, at most `limit` rows each (None: all)."""
    for index, result in enumerate(results(lake, sql, limit)):
        if fmt == "table":
            rows = [row for chunk in result.chunks for row in chunk]
            more = limit is not None and len(rows) > limit
            out.write(("\n" if index else "") + format_table(result.columns, rows[:limit], more) + "\n")
        elif fmt == "csv":
            if index:
                out.write("\n")
            write_csv(result, limit, out)
        else:
            write_json_lines(result, limit, out)
        out.flush()


def _limited(result: Result, limit: int | None) -> Iterator[list[tuple[Any, ...]]]:
    left = limit
    for chunk in result.chunks:
        if left is not None:
            chunk = chunk[:left]
            left -= len(chunk)
        if chunk:
            yield chunk
        if left == 0:
            return


def write_csv(result: Result, limit: int | None, out: TextIO) -> None:
    """A header line, then the rows as they come (NULL as an empty field)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for chunk in _limited(result, limit):
        writer.writerows([["" if v is None else _text(v) for v in row] for row in chunk])
        out.flush()


def write_json_lines(result: Result, limit: int | None, out: TextIO) -> None:
    """One JSON object per row, as the rows come."""
    for chunk in _limited(result, limit):
        out.write(
            "".join(
                json.dumps(dict(zip(result.columns, row)), default=_json_value, ensure_ascii=False) + "\n"
                for row in chunk
            )
        )
        out.flush()


def _text(value: Any) -> str:
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def format_table(columns: list[str], rows: list[tuple[Any, ...]], more: bool = False) -> str:
    """A plain text table (tabulate's "simple"): a header, a rule, one line per row, numbers
    right-aligned; then how many rows, or that these are the first ones."""
    import tabulate as tabulate_module
    from tabulate import tabulate

    tabulate_module.MIN_PADDING = 0  # columns as wide as their widest cell or header, no wider

    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float, decimal.Decimal)) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]
    cells = [["NULL" if v is None else v.hex() if isinstance(v, bytes) else str(v) for v in row] for row in rows]
    table = (
        tabulate(
            cells,
            headers=columns,
            tablefmt="simple",
            disable_numparse=True,
            colalign=["right" if n else "left" for n in numeric],
        )
        if columns
        else ""
    )
    count = (
        f"(first {len(rows):,} rows; --limit N for more)"
        if more
        else f"({len(rows):,} row{'s' if len(rows) != 1 else ''})"
    )
    return f"{table}\n{count}" if table else count
