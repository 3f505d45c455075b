"""The bench's own arithmetic and readers: the fixed-cost fit, batch times, the old file sink's log."""

import json

import pytest

from bench.run import (
    ALTERNATE,
    BEFORE_ROW,
    OURS_ROW,
    SMALL_HEAP_ROW,
    STREAMING_FLOOR_ROW,
    WRITE_PATH,
    commit_cost_line,
    commit_ms,
    fit_line,
    later_batches_median,
    main,
    progress_batch_ms,
    ratio,
    ratios,
    sink_log_files,
    write_docs,
)


def test_the_fixed_cost_fit_recovers_a_line_and_refuses_one_x():
    # Given runs of 1..16 objects that cost 23 s plus 6 s an object, give or take a second
    points = [(1, 29.5), (2, 34.5), (4, 47.0), (8, 71.0), (16, 118.5)]
    # When the line is fitted
    a, b = fit_line(points)
    # Then the fixed cost and the cost per object come back
    assert a == pytest.approx(23.0, abs=1.0)
    assert b == pytest.approx(6.0, abs=0.2)
    with pytest.raises(ValueError):
        fit_line([(8, 60.0), (8, 61.0)])


def test_batch_times_come_from_progress_lines_in_batch_order_skipping_empty_batches():
    # Given a job's output: progress lines out of order, an empty batch, and other lines
    lines = [
        "IOTPIPE_TASKS {}",
        'IOTPIPE_PROGRESS {"batch": 2, "input": 10, "ms": 300}',
        'IOTPIPE_PROGRESS {"batch": 0, "input": 10, "ms": 900}',
        'IOTPIPE_PROGRESS {"batch": 3, "input": 0, "ms": 5}',
        'IOTPIPE_PROGRESS {"batch": 1, "input": 10, "ms": 400}',
    ]
    # When the batch times are read
    batch_ms = progress_batch_ms(lines)
    # Then they are the batches that read rows, by batch id; the median leaves the first out
    assert batch_ms == [900, 400, 300]
    assert later_batches_median(batch_ms) == 350
    assert later_batches_median([900]) is None


def test_a_ratio_over_a_missing_figure_is_none():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None


def test_the_file_sink_log_lists_the_files_of_its_latest_compact_and_later_batches(tmp_path):
    # Given a sink log: batch 0, a compaction at batch 1 that holds it, batch 2 deleting a file
    log = tmp_path / "gold" / "_spark_metadata"
    log.mkdir(parents=True)

    def write(name, *records):
        (log / name).write_text("\n".join(["v1", *(json.dumps(r) for r in records)]) + "\n")

    write("0", {"path": "file:/g/a.parquet", "size": 10, "action": "add"})
    write("1.compact", {"path": "file:/g/a.parquet", "size": 10, "action": "add"},
          {"path": "file:/g/b.parquet", "size": 20, "action": "add"})  # fmt: skip
    write("2", {"path": "file:/g/c.parquet", "size": 30, "action": "add"},
          {"path": "file:/g/a.parquet", "size": 10, "action": "delete"})  # fmt: skip
    # When its committed files are listed
    files = sink_log_files(tmp_path / "gold")
    # Then they are what the compact file and the later batch leave
    assert files == [("file:/g/b.parquet", 20), ("file:/g/c.parquet", 30)]


def commit_report(table: str, duration: str) -> str:
    return (
        f"Received metrics report: CommitReport{{tableName=local.iotpipe.{table}, snapshotId=1, sequenceNumber=1, "
        "operation=append, commitMetrics=CommitMetricsResult{totalDuration=TimerResult{timeUnit=NANOSECONDS, "
        f"totalDuration={duration}, count=1}}, attempts=CounterResult{{unit=COUNT, value=1}}}}, metadata={{}}}}"
    )


def test_commit_durations_come_from_icebergs_commit_reports_per_table_in_order():
    # Given a job's output: commit reports of two tables (one over a minute), and other lines
    lines = [
        'IOTPIPE_PROGRESS {"batch": 0, "input": 10, "ms": 900}',
        commit_report("gold", "PT0.25S"),
        commit_report("quarantine", "PT0.0415S"),
        commit_report("gold", "PT1M2.5S"),
        "Received metrics report: ScanReport{tableName=local.iotpipe.gold, scanMetrics=...}",
    ]
    # When the commit durations are read
    commits = commit_ms(lines)
    # Then each table's are in milliseconds, in the order made; scans are not commits
    assert commits == {"gold": [250.0, 62500.0], "quarantine": [41.5]}
    # And a row's line gives each table's median, and all commits' share of the median batch
    line = commit_cost_line(
        "ours", {"commit_ms": {"gold": [100.0, 300.0], "seen_ids": [50.0]}, "gold_batch_ms": [900, 2500]}
    )
    assert "gold 200 ms (2 commits)" in line
    assert "seen_ids 50 ms (1 commit)" in line
    # (all commits over the batches, one Gold commit each: the seen-id store's expiry adds commits)
    assert "225 ms a batch; 13.2% of the median batch" in line


def test_ratios_of_a_run_of_some_rows_leave_out_what_was_not_run():
    # Given a run of our job and the streaming floor only (--rows ours,streaming-floor)
    results = {
        OURS_ROW: {"seconds": 300.0, "gold_batch_ms": [70_000, 60_000, 62_000], "files": 10},
        STREAMING_FLOOR_ROW: {"seconds": 250.0, "gold_batch_ms": [55_000, 50_000, 52_000]},
    }
    # When its ratios are taken
    figures = ratios(results, plain_seconds=1.0, generate_seconds=2.0, small={}, small_size="128 MiB")
    # Then those of the rows run are there, and none over a row that was not
    assert figures["iotpipe Spark / streaming floor time"] == 1.2
    assert figures["median batch time of batches 2..n, iotpipe / streaming floor"] == 1.2
    assert not any("before Iceberg" in name or "naive" in name for name in figures)


def test_docs_are_written_for_runs_of_some_rows_modes_and_write_paths_side_by_side(tmp_path):
    # Given the JSON of earlier runs: a size measured before Iceberg with every row, a size on the
    # Iceberg tables with some rows only, and a run of our job and the job before in turn
    size_row = {"seconds": 10.0, "rows_per_s": 1, "mb_per_s": 1.0, "peak_rss_mib": 100, "files": 1,
                "median_file_mib": 0.1, "gold_batch_ms": [9000]}  # fmt: skip
    runs = {
        "5GiB": {
            "size": "5GiB",
            "bytes": 5,
            "records": 5,
            "measured_at": "t",
            "machine": "m",
            "results": {OURS_ROW: size_row, SMALL_HEAP_ROW: size_row},
            "ratios": {},
        },  # fmt: skip
        "1GiB": {
            "size": "1GiB",
            "bytes": 1,
            "records": 1,
            "measured_at": "t",
            "machine": "m",
            "write_path": WRITE_PATH,
            "rows": ["ours"],
            "results": {OURS_ROW: {**size_row, "commit_ms": {"gold": [300.0]}}},
            "ratios": {},
        },  # fmt: skip
        ALTERNATE: {
            "size": "1GiB",
            "measured_at": "t",
            "machine": "m",
            "write_path": WRITE_PATH,
            "runs": {
                OURS_ROW: [
                    {"seconds": 180.0, "gold_batch_ms": [170_000], "commit_ms": {"gold": [300.0]}},
                    {"seconds": 190.0, "gold_batch_ms": [175_000], "commit_ms": {"gold": [320.0]}},
                ],
                BEFORE_ROW: [
                    {"seconds": 120.0, "gold_batch_ms": [110_000]},
                    {"seconds": 150.0, "gold_batch_ms": [140_000]},
                ],
            },
        },  # fmt: skip
    }
    # When the docs are written
    write_docs(runs, tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    # Then every run is there, a partial run says which rows ran, and no memory ratio is taken
    # across write paths
    assert "Only these rows were run (`--rows ours`)" in text
    assert "measured on different write paths: no memory ratio" in text
    assert "run 1 s | run 2 s" in text
    assert "ours / before Iceberg: median wall time 1.37, median batch time 1.38; run by run 1.5, 1.27." in text
    assert "gold 310 ms (2 commits)" in text


def test_the_bench_refuses_a_count_below_one_and_two_modes_at_once(capsys):
    for argv in (["--alternate", "0"], ["--alternate", "3", "--commit-cost"], ["--fixed-cost", "--rows", "ours"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert "one at a time" in capsys.readouterr().err
