"""`iotpipe report`'s history: read from the manifests and verification documents the pipeline
writes (built here through the production functions, no Spark), bounded, and shown as a table."""

from __future__ import annotations

import json

import pytest

from iotpipe.cli import main
from iotpipe.lake.storage import LocalStorage
from iotpipe.run.history import HISTORY_FOLDER, RunSummary, format_table, gold_by_date_city, read_history
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
                                "quarantined", "%", "duplicates", "quality", "attempts"]  # fmt: skip
    assert table[2].split() == ["run-b", "SUCCEEDED", "console", "2024-03-01", "12:19:18", "42.0", "10", "6", "4",
                                "40.00", "%", "0", "ok", "1"]  # fmt: skip
    assert table[3].split()[0] == "run-a" and len(table) == 4


def summary(**fields) -> RunSummary:
    values = dict(run_id="run-q", status="SUCCEEDED_WITH_QUALITY_WARNING", trigger="console",
                  started_at="2024-01-01T00:00:00+00:00", seconds=60, finished_at="2024-01-01T00:01:00+00:00",
                  records={"input": 1000, "gold": 900, "quarantined": 90,
                  "duplicates": 10}, attempts=1)  # fmt: skip
    return RunSummary(**{**values, **fields})


def test_the_table_names_the_rules_a_run_broke_and_says_when_no_policy_applied():
    breach = {"rule": "max_quarantine_ratio", "figure": 0.09, "threshold": 0.05, "description": "..."}
    rows = format_table([summary(quality_breaches=[breach], quality_judged=True),
                         summary(run_id="run-f", status="FAILED", records={"input": 0})]).splitlines()  # fmt: skip
    assert rows[2].split()[9:13] == ["9.00", "%", "10", "max_quarantine_ratio"]
    assert rows[3].split()[-2] == "-"  # a failed run is not judged on quality


def test_a_quarantined_share_too_small_to_round_is_not_shown_as_zero():
    row = format_table([summary(records={"input": 10**6, "gold": 10**6 - 1, "quarantined": 1, "duplicates": 0})])
    assert "<0.01 %" in row


def test_iotpipe_report_json_has_each_runs_figures_and_verdicts(lake, capsys):
    assert main(["report", "--lake", str(lake.root), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == ["run-b", "run-a"]
    assert runs[0]["records"] == {"input": 10, "gold": 6, "quarantined": 4, "duplicates": 0}
    assert runs[0]["quarantine_ratio"] == 0.4 and runs[0]["reconciles"] is True
    assert runs[0]["max_quarantine_ratio"] == 1.0 and runs[0]["quality_breaches"] == []


def test_iotpipe_report_run_prints_one_runs_report_and_writes_its_page(lake, tmp_path, capsys):
    page = tmp_path / "run-a.html"
    assert main(["report", "--lake", str(lake.root), "--run", "run-a", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "run                      run-a" in out and "reconciles               yes" in out
    assert "<title>iotpipe run run-a: SUCCEEDED</title>" in page.read_text()
    assert main(["report", "--lake", str(lake.root), "--run", "run-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "run-a"
    assert main(["report", "--lake", str(lake.root), "--run", "run-nope"]) == 2


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
    from iotpipe.run.report_page import render_history_page

    hostile = "<b onmouseover=alert(1)>x</b>"
    run = RunSummary(run_id=hostile, status="FAILED", trigger=hostile, finished_at="2024-01-01T00:00:00+00:00",
                     records={"input": 1}, attempts=1, problems=[hostile])  # fmt: skip
    page = render_history_page([run])
    assert hostile not in page and "&lt;b onmouseover=alert(1)&gt;x&lt;/b&gt;" in page
