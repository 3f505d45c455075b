"""`iotpipe report`'s history: read from the manifests and verification documents the pipeline
writes (built here through the production functions, no Spark), bounded, and shown as a table."""

from __future__ import annotations

import pytest

from iotpipe.cli import main
from iotpipe.lake.storage import LocalStorage
from iotpipe.run.history import HISTORY_FOLDER, format_table, gold_by_date_city, read_history
from tests.unit.run_history_lake import HistoryLake, RunSpec

FIRST = RunSpec("run-a", gold={("2024-01-01", "Oslo"): 5, ("2024-01-02", "Lyon"): 3}, quarantined={"bad_json": 2},
                duplicates=1, seconds=61.5)  # fmt: skip
SECOND = RunSpec("run-b", gold={("2024-01-02", "Lyon"): 4, ("2024-01-02", "São Paulo/Sul"): 2},
                 quarantined={"bad_json": 1, "missing_field": 3}, seconds=42)  # fmt: skip


def two_runs(root) -> HistoryLake:
    history = HistoryLake(root)
    history.run(FIRST)
    history.run(SECOND)
    return history


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> HistoryLake:
    """Two runs, read and never changed by the tests using it."""
    return two_runs(tmp_path_factory.mktemp("lake"))


@pytest.fixture
def own_lake(tmp_path) -> HistoryLake:
    """Two runs, for a test that changes the lake."""
    return two_runs(tmp_path)


def test_history_lists_runs_newest_first_with_the_manifests_figures(lake):
    runs = read_history(lake.storage, lake.settings.runs_uri)
    assert [r.run_id for r in runs] == ["run-b", "run-a"]
    newest, oldest = runs
    assert oldest.records == {"input": 11, "gold": 8, "quarantined": 2, "duplicates": 1}
    assert newest.records == {"input": 10, "gold": 6, "quarantined": 4, "duplicates": 0}
    assert newest.quarantined_by_reason == {"bad_json": 1, "missing_field": 3}
    assert (newest.status, newest.trigger, newest.attempts, newest.seconds) == ("SUCCEEDED", "console", 1, 42.0)


def test_gold_rows_by_date_and_city_come_from_the_verification_documents_with_cities_unescaped(lake):
    newest, oldest = read_history(lake.storage, lake.settings.runs_uri)
    assert oldest.gold_rows_by_date_city == {"2024-01-01": {"Oslo": 5}, "2024-01-02": {"Lyon": 3}}
    assert newest.gold_rows_by_date_city == {"2024-01-02": {"Lyon": 4, "São Paulo/Sul": 2}}


def test_a_city_named_with_separators_and_escapes_reads_back_whole(tmp_path):
    city = 'a/b:c=d?e%f"g#h%2F'
    history = HistoryLake(tmp_path)
    history.run(RunSpec("run-x", gold={("2024-01-01", city): 7, ("2024-01-01", "a"): 1}))
    (run,) = read_history(history.storage, history.settings.runs_uri)
    assert run.gold_rows_by_date_city == {"2024-01-01": {"a": 1, city: 7}}


def test_partition_names_spark_escaped_in_older_documents_read_back_as_the_city():
    """Verification documents of the plain-Parquet Gold named partitions as Spark named the folders."""
    escaped = "a%2Fb%3Ac%3Dd%3Fe%25f%22g%23h"
    assert gold_by_date_city({f"date=2024-01-01/location_city={escaped}": 7}) == {"2024-01-01": {'a/b:c=d?e%f"g#h': 7}}


def test_the_history_reads_only_the_last_runs_asked_for(own_lake):
    own_lake.run(RunSpec("run-c", gold={("2024-01-03", "Oslo"): 1}))
    assert [r.run_id for r in read_history(own_lake.storage, own_lake.settings.runs_uri, last=2)] == ["run-c", "run-b"]


class CountingStorage:
    """Local storage that records every listing it is asked for."""

    def __init__(self) -> None:
        self.inner = LocalStorage()
        self.listed: list[tuple[str, int | None]] = []

    def list(self, prefix_uri):
        self.listed.append((prefix_uri, None))
        return self.inner.list(prefix_uri)

    def list_first(self, prefix_uri, limit):
        self.listed.append((prefix_uri, limit))
        return self.inner.list_first(prefix_uri, limit)

    def read_bytes(self, uri):
        return self.inner.read_bytes(uri)


def test_reading_the_history_is_one_bounded_listing_of_the_index_whatever_the_lake_holds(lake):
    storage = CountingStorage()
    read_history(storage, lake.settings.runs_uri, last=5)
    assert storage.listed == [(f"{lake.settings.runs_uri}/{HISTORY_FOLDER}/", 5)]


def test_a_run_whose_verification_document_is_gone_is_shown_with_the_problem(own_lake):
    (own_lake.root / "artifacts" / "runs" / "run-a" / "verification.json").unlink()
    newest, oldest = read_history(own_lake.storage, own_lake.settings.runs_uri)
    assert oldest.gold_rows_by_date_city == {} and "verification document missing" in oldest.problems[0]
    assert newest.problems == []


def test_the_table_has_a_row_per_run_and_the_columns_operators_read(lake):
    table = format_table(read_history(lake.storage, lake.settings.runs_uri)).splitlines()
    assert table[0].split() == ["run", "status", "trigger", "started", "seconds", "input", "gold", "quarantined",
                                "duplicates", "attempts"]  # fmt: skip
    assert table[2].split() == ["run-b", "SUCCEEDED", "console", "2024-03-01", "12:19:18", "42.0", "10", "6", "4",
                                "0", "1"]  # fmt: skip
    assert table[3].split()[0] == "run-a" and len(table) == 4


def test_iotpipe_report_prints_the_table_and_writes_the_page(lake, tmp_path, capsys):
    page = tmp_path / "history.html"
    assert main(["report", "--lake", str(lake.root), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "run-b" in out and "run-a" in out and f"wrote {page}" in out
    assert page.read_text().startswith("<!DOCTYPE html>") and "run-b" in page.read_text()


def test_iotpipe_report_on_a_lake_without_runs_says_so(tmp_path, capsys):
    assert main(["report", "--lake", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "no runs recorded yet"


def test_iotpipe_report_refuses_a_lake_that_is_not_a_folder(tmp_path, capsys):
    assert main(["report", "--lake", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"iotpipe report: error: --lake {tmp_path / 'missing'}: no such folder"


def test_iotpipe_report_refuses_a_number_of_runs_out_of_bounds(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--lake", str(tmp_path), "--last", "0"])
    assert exit_.value.code == 2 and "--last: must be between 1 and 1,000" in capsys.readouterr().err


def test_the_page_escapes_every_run_field_it_prints_in_the_table():
    from iotpipe.run.history import RunSummary
    from iotpipe.run.report_page import render_page

    hostile = "<b onmouseover=alert(1)>x</b>"
    run = RunSummary(run_id=hostile, status="FAILED", trigger=hostile, finished_at="2024-01-01T00:00:00+00:00",
                     records={"input": 1}, attempts=1, problems=[hostile])  # fmt: skip
    page = render_page([run])
    assert hostile not in page and "&lt;b onmouseover=alert(1)&gt;x&lt;/b&gt;" in page
