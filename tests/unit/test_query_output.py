"""`iotpipe query`'s output: rows stream as DuckDB produces them, in a table, CSV or JSON lines,
with a row limit; several statements each print their result; a reader that goes away (`| head`)
ends the command quietly; only the documented tables are there. The lake is built without Spark
(tests/unit/run_history_lake.py: real Iceberg commits and run reports)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotpipe.cli import main
from iotpipe.lake import tables
from iotpipe.query import print_results
from iotpipe.run.settings import Settings
from tests.unit.run_history_lake import HistoryLake, RunSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("query-lake")
    HistoryLake(root).run(RunSpec("run-a", gold={("2024-01-01", "Oslo"): 3, ("2024-01-02", "Zürich"): 2},
                                  quarantined={"malformed_json": 2}, duplicates=1))  # fmt: skip
    return root


def query(lake: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main(["query", "--lake", str(lake), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_tables_lists_only_the_documented_tables(lake, capsys):
    code, out, _ = query(lake, "--format", "csv", "show tables", capsys=capsys)
    assert code == 0 and out.splitlines() == ["name", "gold", "quarantine", "run_quarantine", "runs"]


def test_several_statements_each_print_their_result_in_order(lake, capsys):
    code, out, _ = query(lake, "select 1 as one; select count(*) as gold_rows from gold", capsys=capsys)
    assert code == 0
    first, second = out.split("\n\n")
    assert first.splitlines()[0].strip() == "one" and first.splitlines()[-1] == "(1 row)"
    assert second.splitlines()[0].strip() == "gold_rows" and second.splitlines()[2].strip() == "5"


def test_a_semicolon_in_a_string_does_not_split_a_statement(lake, capsys):
    code, out, _ = query(lake, "--format", "csv", "select 'a;b' as text", capsys=capsys)
    assert code == 0 and out.splitlines() == ["text", "a;b"]


def test_csv_has_a_header_and_every_row_and_nulls_as_empty_fields(lake, capsys):
    code, out, _ = query(lake, "--format", "csv", "select location_city, count(*) as n, null as nothing from gold "
                         "group by 1 order by 1", capsys=capsys)  # fmt: skip
    assert code == 0 and list(csv.reader(io.StringIO(out))) == [["location_city", "n", "nothing"], ["Oslo", "3", ""],
                                                                ["Zürich", "2", ""]]  # fmt: skip


def test_json_is_one_object_per_line_with_dates_as_iso_text(lake, capsys):
    code, out, _ = query(lake, "--format", "json", 'select "date", count(*) as n from gold group by 1 order by 1',
                         capsys=capsys)  # fmt: skip
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [
        {"date": "2024-01-01", "n": 3},
        {"date": "2024-01-02", "n": 2},
    ]


def test_a_table_shows_the_first_thousand_rows_and_says_so(lake, capsys):
    code, out, _ = query(lake, "select range as n from range(1500)", capsys=capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + 1000 + 1
    assert lines[-1] == "(first 1,000 rows; --limit N for more)"


def test_csv_and_json_have_no_limit_unless_asked(lake, capsys):
    assert len(query(lake, "--format", "csv", "select * from range(1500)", capsys=capsys)[1].splitlines()) == 1501
    assert len(query(lake, "--format", "json", "--limit", "7", "select * from range(1500)",
                     capsys=capsys)[1].splitlines()) == 7  # fmt: skip
    assert len(query(lake, "--limit", "0", "select * from range(1500)", capsys=capsys)[1].splitlines()) == 1503


class ClosedAfter(io.StringIO):
    """A reader that takes `lines` lines and then goes away."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= text.count("\n")
        return super().write(text)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_rows_are_printed_as_they_come_not_after_the_whole_result(lake, fmt):
    """A billion rows: fetched whole, this would not end in time; streamed, the reader has its
    first lines at once and the query stops when the reader goes."""
    out = ClosedAfter(3)
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        print_results(str(lake), "select range as n from range(1000000000)", fmt, None, out)
    assert time.monotonic() - started < 10
    assert len(out.getvalue().splitlines()) >= 3


def test_a_closed_pipe_ends_the_command_quietly_with_status_zero(lake):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-m", "iotpipe.cli", "query", "--lake", str(lake), "--format", "csv",
                           "select range as n from range(100000000)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env) as process:  # fmt: skip
        head = [process.stdout.readline() for _ in range(3)]
        process.stdout.close()
        stderr = process.stderr.read()
        code = process.wait(timeout=60)
    assert head == [b"n\n", b"0\n", b"1\n"]
    assert (code, stderr) == (0, b"")


def test_a_lake_under_a_folder_with_glob_characters_is_queried_as_any_other(tmp_path, capsys):
    root = tmp_path / "lake [1] {a,b} *"  # (a `?` would end a file URI's path for the Iceberg writer)
    HistoryLake(root).run(RunSpec("run-a", gold={("2024-01-01", "Oslo"): 3}, quarantined={"malformed_json": 2}))
    runs_rows = Path(tables.run_rows_uri(Settings.for_local_lake(str(root)).runs_uri, tables.RUNS))
    runs_rows.mkdir(parents=True)
    (runs_rows / "run-a.json").write_text('{"run_id": "run-a"}\n')
    counts = "select (select count(*) from gold) g, (select count(*) from quarantine) q, (select count(*) from runs) r"
    code, out, err = query(root, "--format", "csv", counts, capsys=capsys)
    assert (code, out.splitlines(), err) == (0, ["g,q,r", "3,2,1"], "")
