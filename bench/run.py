"""Benchmark: generator vs a plain write, our Spark job vs a naive Spark job vs DuckDB, side by side
on the same generated Bronze, in one invocation. Writes docs/benchmarks.md (and .json).

    python -m bench.run --sizes 1GiB          # make bench
    python -m bench.run --sizes 1GiB,5GiB     # make bench-5g
    python -m bench.run --fixed-cost          # make bench-fixed-cost: T = a + b * objects
    python -m bench.run --commit-cost         # make bench-commit-cost: each Iceberg commit of our job (1GiB)
    python -m bench.run --alternate 3         # our job and the job before Iceberg in turn, 3 runs each
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from generator.shards import DEFAULT_OBJECT_BYTES, DatasetPlan, summarise, write_dataset
from iotpipe.lake.iceberg import DATA, live_files, read_metadata
from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import DATABASE, GOLD, local_catalog_uri, sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.local.spark_submit import (
    JOB_SCRIPT,
    LOG_CONFIG,
    SPARK_DIR,
    local_submit_options,
    submit_command,
)
from iotpipe.run.sizes import parse_size
from iotpipe.run.spark_args import SparkJobArgs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLAIN_WRITE_BLOCK = 8 * 1024**2
PROGRESS_PREFIX = "IOTPIPE_PROGRESS "  # a committed batch, as our job and the streaming floor print it
MAINTAIN_SCRIPT = SPARK_DIR / "maintain.py"
# The job's log settings plus Iceberg's default metrics reporter on stdout: a CommitReport per commit.
COMMITS_LOG_CONFIG = ROOT / "bench" / "log4j2-commits.properties"
COMMIT_REPORT = re.compile(
    r"CommitReport\{tableName=(?P<table>[^,]+),.*?commitMetrics=CommitMetricsResult\{"
    r"totalDuration=TimerResult\{timeUnit=\w+, totalDuration=(?P<duration>PT[0-9.HMS]+)"
)
ISO_DURATION = re.compile(r"PT(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>[0-9.]+)S)?")
# The write path the figures of this harness measure; runs in docs/benchmarks.json without it were
# measured on the plain-Parquet path before Gold became an Iceberg table.
WRITE_PATH = "iceberg"
PRE_ICEBERG_NOTE = (
    "**On the pre-Iceberg write path** (plain Parquet through Spark's file sink, commit `094d629`), "
    "with that bench's rows (Gold compaction by `spark/compact.py`, the job before one parse at `5a9d253`, "
    "batch times from the job's ledger): to be re-measured on the Iceberg tables."
)


def plain_write(path: Path, size: int) -> float:
    """Seconds for one process to write `size` bytes sequentially (the bandwidth baseline)."""
    block = os.urandom(PLAIN_WRITE_BLOCK)
    started = time.perf_counter()
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            out.write(block[: min(remaining, PLAIN_WRITE_BLOCK)])
            remaining -= PLAIN_WRITE_BLOCK
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


class CommandFailed(RuntimeError):
    pass


class WrongOutput(RuntimeError):
    """A job wrote other rows than the generator's truth says: its time compares nothing."""


def measure_with_output(command: list[str], env: dict | None = None) -> tuple[dict, list[str]]:
    """Wall time and peak RSS of `command`, and the lines it printed."""
    log = Path(tempfile.mkstemp(prefix="iotpipe-bench-", suffix=".log")[1])
    stdout = Path(tempfile.mkstemp(prefix="iotpipe-bench-", suffix=".out")[1])
    env = dict(env or os.environ, IOTPIPE_BENCH_LOG=str(log), IOTPIPE_BENCH_STDOUT=str(stdout))
    output = subprocess.run(
        [sys.executable, "-m", "bench.measure", *command], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if not output.stdout.strip():
        raise CommandFailed(f"no measure of {' '.join(command[:3])} ...: {output.stderr.strip()[-500:]}")
    result = json.loads(output.stdout)
    lines = stdout.read_text(errors="replace").splitlines()
    stdout.unlink()
    if result["exit_code"] != 0:
        # spark-submit passes the Python driver's traceback on to its stdout: kept with the log.
        with log.open("a") as kept:
            kept.write("\n".join(["", "--- stdout", *lines, ""]))
        text = log.read_text(errors="replace").splitlines()
        errors = [line for line in text if "Error" in line or "Exception" in line]
        raise CommandFailed(
            f"exit {result['exit_code']}: {' '.join(command)}\n(stderr kept in {log})\n" + "\n".join(errors[:5])
        )
    log.unlink()
    return result, lines


def measure(command: list[str], env: dict | None = None) -> dict:
    return measure_with_output(command, env)[0]


def file_stats(files: list[tuple[str, int]]) -> dict:
    sizes = [size for _, size in files]
    return {"files": len(sizes), "median_file_mib": round(statistics.median(sizes) / 2**20, 2) if sizes else 0.0}


def parquet_rows(files: list[tuple[str, int]]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path, _ in files)


def glob_parquet(root: Path) -> list[tuple[str, int]]:
    return [(str(p), p.stat().st_size) for p in root.rglob("*.parquet")]


def gold_table_files(lake: Path) -> list[tuple[str, int, int]]:
    """Gold's data files as its current snapshot lists them (uri, bytes, rows), read as VerifyGold
    reads them: the local catalog's pointer, the metadata file, the manifests (iotpipe.lake.iceberg)."""
    storage = LocalStorage()
    glue = LocalGlue(sqlite_path(local_catalog_uri(str(lake))))
    metadata = read_metadata(storage, glue, DATABASE, GOLD.name)
    if metadata.current_snapshot_id is None:
        return []
    files = live_files(storage, metadata.snapshots[metadata.current_snapshot_id])
    return [(f.uri, f.size, f.records) for f in files if f.content == DATA]


def sink_log_files(sink: Path) -> list[tuple[str, int]]:
    """The files Spark's file sink committed (`_spark_metadata`: the newest `N.compact`, then the
    batches after it; each line after the version is a file, added or deleted), with their sizes.
    For the job before Iceberg, which wrote Gold that way."""
    log = sink / "_spark_metadata"
    batches = {}
    for entry in log.iterdir():
        name = entry.name.removesuffix(".compact")
        if name.isdigit():
            batches[int(name)] = entry
    compacted = [batch for batch, entry in batches.items() if entry.name.endswith(".compact")]
    first = max(compacted, default=0)
    files: dict[str, int] = {}
    for batch in sorted(b for b in batches if b >= first):
        for line in batches[batch].read_text().splitlines()[1:]:
            record = json.loads(line)
            if record.get("action", "add") == "add":
                files[record["path"]] = int(record["size"])
            else:
                files.pop(record["path"], None)
    return sorted(files.items())


def progress_batch_ms(lines: list[str]) -> list[int]:
    """Each batch's time (ms, Spark's `triggerExecution`) in batch order, from the progress lines
    our job and the streaming floor print for every batch that read rows."""
    batches = {}
    for line in lines:
        if line.startswith(PROGRESS_PREFIX):
            progress = json.loads(line[len(PROGRESS_PREFIX) :])
            if progress.get("input") and progress.get("ms") is not None:
                batches[progress["batch"]] = int(progress["ms"])
    return [batches[batch] for batch in sorted(batches)]


def spark_env() -> dict:
    import pyspark

    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(Path(pyspark.__file__).parent),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    return env


OURS_ROW = "iotpipe Spark job"
SMALL_HEAP_ROW = "iotpipe Spark job, 1 GiB heap"
# The job before Gold became an Iceberg table: the same one parse and de-duplication, Gold and the
# quarantine written as plain Parquet through Spark's file sink. Measured from its own commit.
BEFORE_COMMIT = "fe1e1c7"
BEFORE_ROW = f"iotpipe Spark job before Iceberg ({BEFORE_COMMIT}: plain Parquet, Spark's file sink)"
MAINTENANCE_ROW = "table maintenance after our job (spark/maintain.py)"
NAIVE_ROW = "naive Spark job"
FLOOR_ROW = "Spark floor (Gold write only)"
STREAMING_FLOOR_ROW = "Spark floor in our batches (streaming, Gold write only)"
DUCKDB_ROW = "DuckDB (reference)"
# --rows: the rows to run (default all); our job's row brings table maintenance with it.
ROW_KEYS = {
    OURS_ROW: "ours",
    SMALL_HEAP_ROW: "small-heap",
    BEFORE_ROW: "before",
    NAIVE_ROW: "naive",
    FLOOR_ROW: "floor",
    STREAMING_FLOOR_ROW: "streaming-floor",
    DUCKDB_ROW: "duckdb",
    "one new object on each lake": "one-new-object",
}


@dataclass(frozen=True)
class StreamingJob:
    """Our streaming job, or the one before Iceberg: how it is submitted, and how the bench reads
    Gold's committed files and each batch's time from what it left."""

    label: str
    script: Path
    iceberg: bool

    def command(self, bronze: Path, out: Path, run_id: str, driver_memory: str) -> list[str]:
        """spark-submit as `iotpipe transform` (and the local engine's RunSparkStep) submits it."""
        job = SparkJobArgs(
            bronze=str(bronze),
            gold=str(out / "gold"),
            quarantine=str(out / "quarantine"),
            checkpoint=str(out / "checkpoint"),
            run_id=run_id,
            catalog=local_catalog_uri(str(out)),
        )
        if self.iceberg:  # with Iceberg's report of each commit's duration (a line per commit: no cost to speak of)
            command = submit_command(job.to_argv(), master="local[2]", driver_memory=driver_memory, script=self.script)
            swapped = [part.replace(f"file:{LOG_CONFIG}", f"file:{COMMITS_LOG_CONFIG}") for part in command]
            if swapped == command:
                raise RuntimeError(f"the job's command no longer names {LOG_CONFIG}: no commit reports to read")
            return swapped
        # The job before Iceberg has no catalog: its arguments as they were then.
        argv = job.to_argv()
        for option in ("--catalog", "--catalog-database"):
            at = argv.index(option)
            del argv[at : at + 2]
        return [*local_submit_options(master="local[2]", driver_memory=driver_memory), str(self.script), *argv]

    def env(self, env: dict) -> dict:
        if self.script == JOB_SCRIPT:
            return env
        return dict(env, PYTHONPATH=str(self.script.parent.parent))  # the job of another commit, its own packages

    def gold_files(self, out: Path) -> list[tuple[str, int]]:
        if self.iceberg:
            return [(uri, size) for uri, size, _ in gold_table_files(out)]
        return sink_log_files(out / "gold")

    def batch_ms(self, out: Path, lines: list[str]) -> list[int]:
        if self.iceberg:
            return progress_batch_ms(lines)
        # The job before Iceberg kept a ledger entry per batch (its progress, `ms` its triggerExecution).
        entries = [json.loads(p.read_text()) for p in (out / "checkpoint" / "ledger" / "gold").glob("*.json")]
        return [e["ms"] for e in sorted((e for e in entries if e["input_rows"]), key=lambda e: e["batch"])]


OURS = StreamingJob("iotpipe", JOB_SCRIPT, iceberg=True)


def before_tree(work: Path) -> Path:
    """The job's code as of BEFORE_COMMIT, extracted from this repository's history."""
    tree = work / "before"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_COMMIT, "spark", "iotpipe"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise RuntimeError(f"the bench needs commit {BEFORE_COMMIT} (a full clone): {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def run_job(
    job: StreamingJob, bronze: Path, out: Path, driver_memory: str, env: dict, run_id: str = "bench"
) -> tuple[dict, dict, list[str]]:
    """Measure one run of a streaming job; return the measure, its run summary and its output lines."""
    result, lines = measure_with_output(job.command(bronze, out, run_id, driver_memory), job.env(env))
    summary = json.loads((out / "checkpoint" / "runs" / f"{run_id}.json").read_text())
    return result, summary, lines


def full_run(job: StreamingJob, bronze: Path, out: Path, driver_memory: str, truth: dict, env: dict) -> dict:
    """One run over the whole Bronze; its Gold rows must be the generator's truth."""
    result, summary, lines = run_job(job, bronze, out, driver_memory, env)
    if summary["gold_rows"] != truth["gold"]:
        raise WrongOutput(f"{job.script.name} wrote {summary['gold_rows']} Gold rows, expected {truth['gold']}")
    if job.iceberg and (rows := sum(r for _, _, r in gold_table_files(out))) != truth["gold"]:
        raise WrongOutput(f"Gold's current snapshot holds {rows} rows, expected {truth['gold']}")
    committed = job.gold_files(out)
    batch_ms = job.batch_ms(out, lines)
    figures = {**result, **file_stats(committed), "batches": summary["batches"], "gold_batch_ms": batch_ms}
    if job.iceberg:
        figures["commit_ms"] = commit_ms(lines)
        if (reported := len(figures["commit_ms"].get(GOLD.name, []))) < summary["batches"]:
            raise WrongOutput(f"{reported} Gold commits reported for {summary['batches']} batches: no CommitReport?")
    return figures


def commit_ms(lines: list[str]) -> dict[str, list[float]]:
    """Each table's commit durations (ms) in the order made, from Iceberg's CommitReport lines: the
    commit alone (manifests, metadata file, the catalog's pointer), not the writing of data files."""
    commits: dict[str, list[float]] = {}
    for line in lines:
        if report := COMMIT_REPORT.search(line):
            table_name = report["table"].rsplit(".", 1)[-1]
            commits.setdefault(table_name, []).append(round(duration_ms(report["duration"]), 1))
    return commits


def duration_ms(iso: str) -> float:
    """A java.time.Duration's text (PT0.0265S, PT1M2.5S) in milliseconds."""
    parts = ISO_DURATION.fullmatch(iso)
    if not parts:
        raise ValueError(f"not a duration: {iso}")
    hours, minutes, seconds = (float(parts[unit] or 0) for unit in ("h", "m", "s"))
    return (hours * 3600 + minutes * 60 + seconds) * 1000


def commit_cost_line(name: str, row: dict) -> str:
    """A row's commits: each table's median commit ms and count, and their share of the median batch."""
    commits = row.get("commit_ms")
    if not commits:
        return ""
    tables = ", ".join(
        f"{table} {statistics.median(ms):.0f} ms ({len(ms)} commit{'s' if len(ms) > 1 else ''})"
        for table, ms in sorted(commits.items())
    )
    batches = len(commits.get(GOLD.name, [])) or 1  # one Gold commit a batch
    per_batch = sum(sum(ms) for ms in commits.values()) / batches
    share = (
        f"; {per_batch / statistics.median(row['gold_batch_ms']):.1%} of the median batch"
        if row.get("gold_batch_ms")
        else ""
    )
    return f"\n{name}: median commit (Iceberg's CommitReport) {tables}; {per_batch:.0f} ms a batch{share}"


def maintain_tables(lake: Path, env: dict, gold_rows: int) -> dict:
    """Table maintenance (spark/maintain.py) as the local engine's MaintainTables step submits it
    after VerifyGold (iotpipe.run.plan.maintenance_arguments), on our job's lake: its time, and
    Gold's data files afterwards, which must hold the same rows."""
    args = ["--gold", str(lake / "gold"), "--checkpoint", str(lake / "checkpoint"), "--runs", str(lake / "runs"),
            "--catalog", local_catalog_uri(str(lake)), "--catalog-database", DATABASE, "--run-id", "bench"]  # fmt: skip
    result = measure(submit_command(args, master="local[2]", script=MAINTAIN_SCRIPT), env)
    outcome = json.loads((lake / "runs" / "bench" / "maintenance.json").read_text())
    files = gold_table_files(lake)
    if (rows := sum(r for _, _, r in files)) != gold_rows:
        raise WrongOutput(f"after maintenance Gold holds {rows} rows, {gold_rows} before")
    gold = outcome["tables"][GOLD.name]
    return {
        **result,
        **file_stats([(uri, size) for uri, size, _ in files]),
        "files_rewritten": gold.get("files_rewritten", 0),
    }


def small_run_seconds(job: StreamingJob, lake: Path, new_object: Path, work: Path, env: dict) -> tuple[float, float]:
    """Seconds of a run over one new object: on `lake` (which remembers every id it took) and
    on an empty lake. The object's ids are new to both, so both write the same Gold rows."""
    target = lake / "bronze" / "small" / new_object.name
    target.parent.mkdir(parents=True)
    shutil.copy(new_object, target)
    on_lake, summary_on_lake, _ = run_job(job, lake / "bronze", lake, "2g", env, run_id="small")
    empty = work / f"empty-{job.label}"
    (empty / "bronze").mkdir(parents=True)
    shutil.copy(new_object, empty / "bronze" / new_object.name)
    on_empty, summary_empty, _ = run_job(job, empty / "bronze", empty, "2g", env, run_id="small")
    if summary_on_lake["gold_rows"] != summary_empty["gold_rows"] or not summary_empty["gold_rows"]:
        raise WrongOutput(
            f"{job.label}: a new object wrote {summary_on_lake['gold_rows']} rows on the lake, "
            f"{summary_empty['gold_rows']} on an empty lake"
        )
    shutil.rmtree(empty)
    return on_lake["seconds"], on_empty["seconds"]


def spark_batch_command(script: str, bronze: Path, out: Path) -> list[str]:
    """spark-submit for a reference job in bench/, with the same options as our job."""
    return [*local_submit_options(master="local[2]"), str(ROOT / "bench" / script), str(bronze), str(out)]


def bronze_objects(bronze: Path) -> list[Path]:
    return sorted(bronze.rglob("*.jsonl"))


def mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to two places; None when a row failed or has no such figure."""
    return round(numerator / denominator, 2) if numerator and denominator else None


def later_batches_median(batch_ms: list[int]) -> float | None:
    """The median time of batches 2..n: the cost per batch once the query runs, without the first
    batch's start-up (issue 24's cost-per-GiB figure). None with fewer than two batches."""
    return statistics.median(batch_ms[1:]) if len(batch_ms) >= 2 else None


def batch_growth(batch_ms: list, label: str) -> dict:
    """Last batch / second batch time of the gold query (equal-sized batches), when there are three or more."""
    if len(batch_ms) < 3:
        return {}
    return {f"last / second gold batch time, {label}": round(batch_ms[-1] / batch_ms[1], 2)}


def generate_bronze(bronze: Path, size: int) -> dict:
    """The bench's Bronze (seed 42, 2 shards) at `bronze`; the generator's truth about it."""
    plan = DatasetPlan(out=str(bronze), seed=42, size_bytes=size, shard_count=2)
    return summarise([asdict(m) for m in write_dataset(plan, processes=2)])


def measured_now() -> dict:
    """When, on what, and on which write path a bench figure was measured."""
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "write_path": WRITE_PATH,
    }


def bench_size(size_text: str, work: Path, selected: frozenset = frozenset(ROW_KEYS.values())) -> dict:
    size = parse_size(size_text)
    work = work / size_text
    shutil.rmtree(work, ignore_errors=True)
    bronze = work / "lake" / "bronze" / "raw"
    bronze.mkdir(parents=True)

    plain_seconds = plain_write(work / "plain.bin", size)
    started = time.perf_counter()
    truth = generate_bronze(bronze, size)
    generate_seconds = time.perf_counter() - started
    records, total_bytes = truth["records"], truth["bytes"]
    print(f"[{size_text}] generated {records:,} records in {generate_seconds:.1f} s", flush=True)

    results = {
        "generator (2 processes)": {"seconds": generate_seconds, "peak_rss_mib": None},
        "plain sequential write": {"seconds": plain_seconds, "peak_rss_mib": None},
    }
    # One new object for the run on a lake that remembers ids: a whole 128 MiB object, or a
    # quarter of a small size's Bronze.
    small_size = min(DEFAULT_OBJECT_BYTES, max(2**20, size // 4))
    small_bronze = work / "small"
    write_dataset(
        DatasetPlan(out=str(small_bronze), seed=4242, size_bytes=small_size, shard_count=1, object_bytes=small_size),
        processes=1,
    )
    new_object = bronze_objects(small_bronze)[0]

    env = spark_env()
    small: dict[str, tuple[float, float]] = {}
    before = StreamingJob("before", before_tree(work) / "spark" / "job.py", iceberg=False)
    for name, driver_memory, job in ((OURS_ROW, "2g", OURS), (SMALL_HEAP_ROW, "1g", OURS), (BEFORE_ROW, "2g", before)):
        if ROW_KEYS[name] not in selected:
            continue
        lake = work / f"{job.label}-{driver_memory}"
        shutil.copytree(bronze.parent, lake / "bronze", copy_function=os.link)
        try:
            results[name] = full_run(job, lake / "bronze", lake, driver_memory, truth, env)
        except CommandFailed as failure:  # reported as it is: a row that failed, with why
            results[name] = {"seconds": None, "peak_rss_mib": None, "failed": str(failure)}
            print(f"[{size_text}] {name} FAILED {failure}", flush=True)
            shutil.rmtree(lake)
            continue
        print(f"[{size_text}] {name} {results[name]['seconds']:.1f} s, batch ms {results[name]['gold_batch_ms']}")
        if job is OURS and driver_memory == "2g":
            results[MAINTENANCE_ROW] = maintain_tables(lake, env, truth["gold"])
            print(f"[{size_text}] {MAINTENANCE_ROW} {results[MAINTENANCE_ROW]}", flush=True)
        if driver_memory == "2g" and "one-new-object" in selected:
            small[job.label] = small_run_seconds(job, lake, new_object, work, env)
            print(f"[{size_text}] {name}: one new object on this lake / on an empty lake {small[job.label]}")
        shutil.rmtree(lake)

    batch_objects = ["--max-files-per-trigger", str(SparkJobArgs.max_files_per_trigger)]
    # The floors keep every valid row (no de-duplication): Gold's rows and the duplicates. The
    # naive job de-duplicates: it must write Gold's rows, or it is not doing the same work.
    valid_rows = truth["gold"] + truth["duplicates"]
    for name, script, out, options, expected_rows in (
        (NAIVE_ROW, "naive_job.py", work / "naive", [], truth["gold"]),
        (FLOOR_ROW, "floor_job.py", work / "floor", [], valid_rows),
        (STREAMING_FLOOR_ROW, "streaming_floor_job.py", work / "streaming-floor", batch_objects, valid_rows),
    ):
        if ROW_KEYS[name] not in selected:
            continue
        results[name], lines = measure_with_output(spark_batch_command(script, bronze, out) + options, env)
        files = glob_parquet(out / "gold" if script == "streaming_floor_job.py" else out)
        results[name].update(file_stats(files))
        if (rows := parquet_rows(files)) != expected_rows:
            raise WrongOutput(f"{script} wrote {rows} rows, expected {expected_rows}: its time would compare nothing")
        if script == "streaming_floor_job.py":
            results[name]["gold_batch_ms"] = progress_batch_ms(lines)
        print(f"[{size_text}] {name} {results[name]['seconds']:.1f} s", flush=True)

    if ROW_KEYS[DUCKDB_ROW] in selected:
        duck = work / "duckdb"
        results[DUCKDB_ROW] = measure([sys.executable, "-m", "bench.duckdb_job", str(bronze), str(duck)])
        results[DUCKDB_ROW].update(file_stats(glob_parquet(duck)))
        print(f"[{size_text}] DuckDB {results[DUCKDB_ROW]['seconds']:.1f} s", flush=True)

    for row in results.values():
        if row["seconds"] is None:
            continue
        row["rows_per_s"] = round(records / row["seconds"])
        row["mb_per_s"] = round(total_bytes / row["seconds"] / 1e6, 1)
        row["seconds"] = round(row["seconds"], 1)
        if row.get("peak_rss_mib") is not None:
            row["peak_rss_mib"] = round(row["peak_rss_mib"])
    shutil.rmtree(work, ignore_errors=True)
    return {
        "size": size_text,
        "bytes": total_bytes,
        "records": records,
        **measured_now(),
        "results": results,
        "ratios": ratios(results, plain_seconds, generate_seconds, small, mib(small_size)),
        "small_run_seconds": {label: [round(x, 1) for x in seconds] for label, seconds in small.items()},
        "rows": sorted(selected),
    }


def ratios(results: dict, plain_seconds: float, generate_seconds: float, small: dict, small_size: str) -> dict:
    """The run's ratios; a ratio over a row that failed is left out."""

    def time_of(row: str) -> float | None:
        return results.get(row, {}).get("seconds")

    ours, maintained = results.get(OURS_ROW, {}), results.get(MAINTENANCE_ROW, {})
    figures = {
        "generator / plain write bandwidth": ratio(plain_seconds, generate_seconds),
        "iotpipe Spark / DuckDB time": ratio(time_of(OURS_ROW), time_of(DUCKDB_ROW)),
        "naive Spark / iotpipe Spark time": ratio(time_of(NAIVE_ROW), time_of(OURS_ROW)),
        "naive Spark / Spark floor time": ratio(time_of(NAIVE_ROW), time_of(FLOOR_ROW)),
        "Spark floor / DuckDB time": ratio(time_of(FLOOR_ROW), time_of(DUCKDB_ROW)),
        "iotpipe Spark / Spark floor time": ratio(time_of(OURS_ROW), time_of(FLOOR_ROW)),
        "streaming floor / Spark floor time": ratio(time_of(STREAMING_FLOOR_ROW), time_of(FLOOR_ROW)),
        "iotpipe Spark / streaming floor time": ratio(time_of(OURS_ROW), time_of(STREAMING_FLOOR_ROW)),
        "median batch time of batches 2..n, iotpipe / streaming floor": ratio(
            later_batches_median(ours.get("gold_batch_ms") or []),
            later_batches_median(results.get(STREAMING_FLOOR_ROW, {}).get("gold_batch_ms") or []),
        ),
        "iotpipe Spark / before Iceberg time": ratio(time_of(OURS_ROW), time_of(BEFORE_ROW)),
        "median Gold file MiB after maintenance, iotpipe": maintained.get("median_file_mib"),
        "Gold files after / before maintenance, iotpipe": ratio(maintained.get("files"), ours.get("files")),
        **batch_growth(ours.get("gold_batch_ms") or [], "iotpipe"),
        **batch_growth(results.get(BEFORE_ROW, {}).get("gold_batch_ms") or [], "before Iceberg"),
    }
    for label, name in (("iotpipe", "iotpipe"), ("before", "before Iceberg")):
        if label in small:
            figures[f"one new {small_size} object, on this lake / on an empty lake, {name}"] = ratio(*small[label])
    return {name: value for name, value in figures.items() if value is not None}


# ---------------------------------------------------------------- the fixed cost of a run
def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares a and b of y = a + b * x."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        raise ValueError("a line needs at least two different x")
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return mean_y - b * mean_x, b


def fixed_cost(work: Path, counts: list[int], object_size: int) -> dict:
    """Runs of our job and of the streaming floor over 1, 2, 4, ... objects, each on a new lake;
    T = a + b * objects fitted to each: a is what every run pays before its first object."""
    work = work / "fixed-cost"
    shutil.rmtree(work, ignore_errors=True)
    plan = DatasetPlan(
        out=str(work / "bronze"), seed=42, size_bytes=max(counts) * object_size, shard_count=2, object_bytes=object_size
    )
    write_dataset(plan, processes=2)
    objects = bronze_objects(work / "bronze")
    env = spark_env()
    seconds: dict[str, list[tuple[int, float]]] = {OURS_ROW: [], STREAMING_FLOOR_ROW: []}
    for count in counts:
        bronze = work / f"bronze-{count}"
        bronze.mkdir()
        for source in objects[:count]:
            os.link(source, bronze / source.name)
        ours, summary, _ = run_job(OURS, bronze, work / f"ours-{count}", "2g", env)
        floor_out = work / f"floor-{count}"
        floor = measure(spark_batch_command("streaming_floor_job.py", bronze, floor_out), env)
        if (rows := parquet_rows(glob_parquet(floor_out / "gold"))) != summary["gold_rows"] + summary["duplicates"]:
            raise WrongOutput(
                f"{count} objects: the streaming floor wrote {rows} valid rows, our job "
                f"{summary['gold_rows']} to Gold and {summary['duplicates']} duplicates"
            )
        seconds[OURS_ROW].append((count, round(ours["seconds"], 1)))
        seconds[STREAMING_FLOOR_ROW].append((count, round(floor["seconds"], 1)))
        print(f"[fixed cost] {count} objects: ours {ours['seconds']:.1f} s, floor {floor['seconds']:.1f} s", flush=True)
        for folder in (bronze, work / f"ours-{count}", floor_out):
            shutil.rmtree(folder)
    shutil.rmtree(work, ignore_errors=True)
    fits = {name: fit_line(points) for name, points in seconds.items()}
    return {
        "object_bytes": object_size,
        **measured_now(),
        "seconds": {name: [list(point) for point in points] for name, points in seconds.items()},
        "fit": {name: {"a_s": round(a, 1), "b_s_per_object": round(b, 2)} for name, (a, b) in fits.items()},
        "a ours / a streaming floor": ratio(fits[OURS_ROW][0], fits[STREAMING_FLOOR_ROW][0]),
    }


def commit_cost(work: Path, size_text: str) -> dict:
    """Our job once over `size_text` of Bronze: each table's commit durations, and each batch's time."""
    work = work / "commit-cost"
    shutil.rmtree(work, ignore_errors=True)
    bronze = work / "lake" / "bronze" / "raw"
    truth = generate_bronze(bronze, parse_size(size_text))
    row = full_run(OURS, bronze.parent, work / "lake", "2g", truth, spark_env())
    shutil.rmtree(work, ignore_errors=True)
    return {
        "size": size_text,
        **measured_now(),
        "row": row,
    }


def alternate(work: Path, size_text: str, repeats: int) -> dict:
    """Our job and the job before Iceberg in turn (ours, before, ours, before, ...), `repeats` runs
    each on the same Bronze, each on a new lake: a machine whose speed drifts moves both alike."""
    work = work / "alternate"
    shutil.rmtree(work, ignore_errors=True)
    bronze = work / "bronze" / "raw"
    truth = generate_bronze(bronze, parse_size(size_text))
    env = spark_env()
    jobs = {OURS_ROW: OURS, BEFORE_ROW: StreamingJob("before", before_tree(work) / "spark" / "job.py", iceberg=False)}
    runs: dict[str, list[dict]] = {name: [] for name in jobs}
    for repeat in range(repeats):
        # ours first, then the job before first, and so on: neither always runs in the other's wake
        for name, job in list(jobs.items())[:: 1 if repeat % 2 == 0 else -1]:
            lake = work / "lake"
            shutil.copytree(bronze.parent, lake / "bronze", copy_function=os.link)
            row = full_run(job, lake / "bronze", lake, "2g", truth, env)
            kept = {key: row[key] for key in ("seconds", "gold_batch_ms", "commit_ms") if key in row}
            runs[name].append({**kept, "seconds": round(row["seconds"], 1)})
            print(f"[alternate {repeat + 1}/{repeats}] {name} {row['seconds']:.1f} s, batch ms {row['gold_batch_ms']}")
            shutil.rmtree(lake)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "size": size_text,
        **measured_now(),
        "runs": runs,
    }


def alternate_table(figure: dict) -> str:
    runs = figure["runs"]
    count = len(runs[OURS_ROW])
    lines = [
        f"### Our job against the job before Iceberg, in turn ({figure['size']}, {count} runs each)",
        "",
        f"Measured {figure['measured_at']} on {figure['machine']}, each run on a new lake.",
        "",
        "| what | " + " | ".join(f"run {n + 1} s" for n in range(count)) + " | median s | spread | median batch s |",
        "| --- | " + " | ".join("---:" for _ in range(count)) + " | ---: | ---: | ---: |",
    ]
    medians, batch_medians = {}, {}
    for name, rows in runs.items():
        seconds = [r["seconds"] for r in rows]
        medians[name] = statistics.median(seconds)
        batch_medians[name] = statistics.median(ms for r in rows for ms in r["gold_batch_ms"]) / 1000
        spread = (max(seconds) - min(seconds)) / medians[name]
        lines.append(
            f"| {name} | " + " | ".join(str(s) for s in seconds)
            + f" | {medians[name]:.1f} | {spread:.0%} | {batch_medians[name]:.1f} |"
        )  # fmt: skip
    paired = [ratio(a["seconds"], b["seconds"]) for a, b in zip(runs[OURS_ROW], runs[BEFORE_ROW])]
    lines += [
        "",
        f"ours / before Iceberg: median wall time {ratio(medians[OURS_ROW], medians[BEFORE_ROW])}, "
        f"median batch time {ratio(batch_medians[OURS_ROW], batch_medians[BEFORE_ROW])}; "
        f"run by run {', '.join(str(r) for r in paired)}.",
    ]
    commits: dict[str, list[float]] = {}
    for run in runs[OURS_ROW]:
        for table_name, ms in run.get("commit_ms", {}).items():
            commits.setdefault(table_name, []).extend(ms)
    batches = [ms for run in runs[OURS_ROW] for ms in run["gold_batch_ms"]]
    if cost := commit_cost_line(OURS_ROW, {"commit_ms": commits, "gold_batch_ms": batches}):
        lines.append(cost)
    return "\n".join(lines)


def commit_cost_table(figure: dict) -> str:
    row = figure["row"]
    return "\n".join([
        f"### The cost of a commit ({figure['size']} of Bronze, our job once)",
        "",
        f"Measured {figure['measured_at']} on {figure['machine']}: {row['seconds']:.1f} s, {row['batches']} batches, "
        f"batch ms {row['gold_batch_ms']}.",
        commit_cost_line(OURS_ROW, row),
        "",
        "Each table's commits in order, ms: "
        + "; ".join(f"{table} {ms}" for table, ms in sorted(row["commit_ms"].items())),
    ])  # fmt: skip


# ---------------------------------------------------------------- docs/benchmarks.md
def table(run: dict) -> str:
    lines = [
        f"### {run['size']} ({run['records']:,} events, {run['bytes'] / 2**30:.2f} GiB)",
        "",
        f"Measured {run['measured_at']} on {run['machine']}.",
    ]
    if run.get("write_path") != WRITE_PATH:
        lines.append(PRE_ICEBERG_NOTE)
    if set(run.get("rows", ROW_KEYS.values())) != set(ROW_KEYS.values()):
        lines.append(f"Only these rows were run (`--rows {','.join(run['rows'])}`).")
    lines += [
        "",
        "| what | wall s | rows/s | MB/s | peak RSS MiB | Gold files | median file MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in sorted(run["results"].items(), key=lambda item: row_rank(item[0])):
        if row.get("failed"):
            lines.append(f"| {name} | failed: {row['failed'].splitlines()[-1][:200]} |  |  |  |  |  |")
            continue
        rss = row.get("peak_rss_mib")
        files = row.get("files")
        median = row.get("median_file_mib")
        lines.append(
            f"| {name} | {row['seconds']} | {row['rows_per_s']:,} | {row['mb_per_s']} | "
            f"{'' if rss is None else rss} | {'' if files is None else files} | {'' if median is None else median} |"
        )
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value} |" for name, value in run["ratios"].items()]
    source = "from the ledger" if run.get("write_path") != WRITE_PATH else "Spark's triggerExecution"
    for name, row in run["results"].items():
        if row.get("gold_batch_ms"):
            lines.append(f"\n{name}: batch ms ({source}) {row['gold_batch_ms']}")
        if cost := commit_cost_line(name, row):
            lines.append(cost)
    return "\n".join(lines)


ROWS = ("generator (2 processes)", "plain sequential write", OURS_ROW, MAINTENANCE_ROW, SMALL_HEAP_ROW, BEFORE_ROW,
        NAIVE_ROW, FLOOR_ROW, STREAMING_FLOOR_ROW, DUCKDB_ROW)  # fmt: skip


def row_rank(name: str) -> int:
    """Rows in the bench's order (a run read back from the JSON file may have them sorted); a row
    of an earlier bench right after the row it stood beside."""
    earlier = {"Gold compaction after our job (spark/compact.py)": OURS_ROW}
    name = earlier.get(name, name)
    if name.startswith("iotpipe Spark job before"):
        name = BEFORE_ROW
    return ROWS.index(name) if name in ROWS else len(ROWS)


def fixed_cost_table(figure: dict) -> str:
    counts = [count for count, _ in figure["seconds"][OURS_ROW]]
    lines = [
        f"### Fixed cost of a run ({mib(figure['object_bytes'])} objects)",
        "",
        f"Measured {figure['measured_at']} on {figure['machine']}. Each run on a new lake; "
        "T = a + b * objects fitted by least squares.",
        "",
        "| what | " + " | ".join(f"{count} objects s" for count in counts) + " | a s | b s/object |",
        "| --- | " + " | ".join("---:" for _ in counts) + " | ---: | ---: |",
    ]
    for name, points in figure["seconds"].items():
        fit = figure["fit"][name]
        lines.append(
            f"| {name} | " + " | ".join(str(s) for _, s in points) + f" | {fit['a_s']} | {fit['b_s_per_object']} |"
        )
    lines += ["", f"a ours / a streaming floor: {figure['a ours / a streaming floor']}"]
    return "\n".join(lines)


def across_sizes(runs: list[dict]) -> str:
    """Peak memory of the fixed 1 GiB heap at the largest size against the smallest."""
    if len(runs) < 2:
        return ""
    row = SMALL_HEAP_ROW
    if runs[0].get("write_path") != runs[-1].get("write_path"):
        return "\n\n### Across sizes\n\nThe sizes were measured on different write paths: no memory ratio.\n"
    small = runs[0]["results"].get(row, {}).get("peak_rss_mib")
    large = runs[-1]["results"].get(row, {}).get("peak_rss_mib")
    if not small or not large:
        return f"\n\n### Across sizes\n\nThe {row} row failed or was not run at one size: no memory ratio.\n"
    return (
        f"\n\n### Across sizes\n\nPeak RSS with a 1 GiB heap: {large} MiB at {runs[-1]['size']}, "
        f"{small} MiB at {runs[0]['size']}: ratio {round(large / small, 2)}.\n"
    )


HEADER = """# Benchmarks

Reproduce: `make bench` (1 GiB) or `make bench-5g` (1 GiB and 5 GiB), i.e.
`python -m bench.run --sizes 1GiB,5GiB`. One invocation generates Bronze once per size and runs,
side by side on it:

- the generator against a plain sequential write of the same bytes;
- our streaming job (as `iotpipe transform` submits it, 2 GiB driver, its tables in a local
  Iceberg catalog), and the same job with a 1 GiB heap: memory is bounded by the batch, not by
  the input; each checked against the generator's truth, by its run summary and by the rows of
  Gold's current snapshot;
- the job before Gold became an Iceberg table (commit `fe1e1c7`, extracted from this
  repository's history: the same one parse and de-duplication, plain Parquet through Spark's
  file sink), the same way;
- table maintenance (`spark/maintain.py`, as the MaintainTables step submits it after
  VerifyGold) on our job's lake: its time, and Gold's data files and their median size after
  it, read from the table's current snapshot;
- for our job and the one before Iceberg: one new object (128 MiB, or a quarter of a smaller
  size) on the lake the full run left (which remembers every id it took) against the same
  object on an empty lake, and each full run's last / second batch time;
- a naive Spark job (schema inference, a Python UDF for the casing fix, no control of output
  files), whose rows must be Gold's rows, or the bench stops: it must do the same work;
- the Spark floor: our own parse, cleaning and Gold write as one batch job, without
  de-duplication state, quarantine or exactly-once bookkeeping: the least any Spark job
  writing this Gold does here;
- the same floor cut into our job's micro-batches (a streaming query over the same objects per
  batch, each batch's valid rows appended to Gold): what batches of 8 objects cost any Spark
  job, before anything our job adds; the median time of batches 2..n, ours against this
  floor's, is the cost per batch once the query runs (with two batches or more);
- DuckDB doing the same cleaning and de-duplication into the same partitioned snappy Parquet
  (reference only: one machine, no incremental state, no quarantine).

Gone with the plain-Parquet write path: the rows of Gold compaction (`spark/compact.py`) and of
the job before one parse (commit `5a9d253`, two queries and RocksDB: that comparison is made);
table maintenance and the job before Iceberg take their places. `python -m bench.seen_id_merge`
now measures what maintenance's rewrite of the seen-id store (an Iceberg table) saves a batch,
instead of the merge of the old store's folders.

`python -m bench.run --fixed-cost` (`make bench-fixed-cost`) measures the fixed cost of a run
instead: our job and the streaming floor over 1, 2, 4, 8 and 16 objects of 128 MiB, each on a
new lake, with T = a + b * objects fitted to each by least squares, and a ours / a floor.

The cost of each Iceberg commit comes from Iceberg itself: its default metrics reporter logs a
CommitReport per commit (the commit alone: manifests, metadata file, the catalog's pointer; not
the data files), which the bench's runs of our job print (`bench/log4j2-commits.properties`).
Each run of our job gives every table's median commit and the commits' share of the median batch;
`python -m bench.run --commit-cost --sizes 1GiB` (`make bench-commit-cost`) measures one run alone.

`python -m bench.run --alternate 3 --sizes 1GiB` runs our job and the job before Iceberg in turn
(ours first, then the job before first, ...), 3 times each on the same Bronze, each on a new lake:
medians, spread and the ratio run by run, for a machine whose speed drifts within the hour.
With `SPARK_CONF_DIR` set as `bench/stages.py`'s docstring shows, each run leaves its event log.
`--rows ours,before,...` runs some rows of a size only (benchmarks.md says which).

Every Spark row runs `local[2]` with the same spark-submit options (a 2 GiB heap taken whole
at start, unless the row says otherwise). Peak RSS is that of the largest process (the JVM for
Spark). Gold files are the data files of Gold's current snapshot for our job (read from the
table's manifests), the file sink's committed files (`_spark_metadata`) for the job before
Iceberg, all files for the others (their rows checked). Batch times are Spark's
`triggerExecution` of each batch that read rows, as our job and the streaming floor print them.
Figures are ratios within one run; absolute seconds vary by machine. What they mean against
the targets (the 4x-DuckDB one is out of reach for any Spark job here, the floor shows why):
[design.md](design.md#where-the-time-goes-and-the-4x-target).
"""


def write_docs(runs: dict[str, dict], docs: Path) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    # In the order measured: a run's rows and ratios keep the order the bench gives them.
    (docs / "benchmarks.json").write_text(json.dumps(runs, indent=2) + "\n")
    ordered = sorted((run for run in runs.values() if "results" in run), key=lambda r: r["bytes"])
    body = "\n\n".join(table(r) for r in ordered) + "\n" + across_sizes(ordered)
    if FIXED_COST in runs:
        body += "\n\n" + fixed_cost_table(runs[FIXED_COST]) + "\n"
    if COMMIT_COST in runs:
        body += "\n\n" + commit_cost_table(runs[COMMIT_COST]) + "\n"
    if ALTERNATE in runs:
        body += "\n\n" + alternate_table(runs[ALTERNATE]) + "\n"
    (docs / "benchmarks.md").write_text(HEADER + "\n## Latest figures\n\n" + body)


FIXED_COST = "fixed-cost"
COMMIT_COST = "commit-cost"
ALTERNATE = "alternate"


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a count of 1 or more, not {text!r}")
    return int(text)


def comma_list(text: str, item: Callable[[str], int]) -> list[int]:
    return [item(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1GiB", help="Bronze sizes, comma-separated (default 1GiB)")
    parser.add_argument("--work", default=str(ROOT / "bench-data"), help="scratch folder (emptied per size)")
    parser.add_argument("--docs", default=str(DOCS), help="where benchmarks.md and .json are written")
    parser.add_argument("--fixed-cost", action="store_true", help="measure the fixed cost of a run instead")
    parser.add_argument("--objects", default="1,2,4,8,16", help="--fixed-cost: object counts of the runs")
    parser.add_argument("--object-size", default="128MiB", help="--fixed-cost: each object's size")
    parser.add_argument(
        "--rows", default="", help=f"the rows to run, comma-separated (default all: {', '.join(ROW_KEYS.values())})"
    )
    parser.add_argument(
        "--alternate", type=positive_int, default=0, metavar="N",
        help="run our job and the job before Iceberg in turn, N times each, at the first size, instead",
    )  # fmt: skip
    parser.add_argument(
        "--commit-cost", action="store_true", help="measure each Iceberg commit of our job instead (at the first size)"
    )
    args = parser.parse_args(argv)
    modes = [flag for flag, on in (("--fixed-cost", args.fixed_cost), ("--alternate", args.alternate),
                                   ("--commit-cost", args.commit_cost), ("--rows", args.rows)) if on]  # fmt: skip
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)} measure different things: one at a time")
    rows = frozenset(args.rows.split(",")) if args.rows else frozenset(ROW_KEYS.values())
    if unknown := rows - set(ROW_KEYS.values()):
        parser.error(f"--rows: unknown {', '.join(sorted(unknown))}; known: {', '.join(ROW_KEYS.values())}")
    docs = Path(args.docs)
    runs_file = docs / "benchmarks.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    if args.fixed_cost:
        counts = comma_list(args.objects, int)
        if len(set(counts)) < 2 or min(counts) < 1:
            parser.error("--objects needs two or more different positive counts")
        runs[FIXED_COST] = fixed_cost(Path(args.work), counts, parse_size(args.object_size))
        print(fixed_cost_table(runs[FIXED_COST]), flush=True)
        write_docs(runs, docs)
        return
    if args.alternate:
        runs[ALTERNATE] = alternate(Path(args.work), args.sizes.split(",")[0], args.alternate)
        print(alternate_table(runs[ALTERNATE]), flush=True)
        write_docs(runs, docs)
        return
    if args.commit_cost:
        runs[COMMIT_COST] = commit_cost(Path(args.work), args.sizes.split(",")[0])
        print(commit_cost_table(runs[COMMIT_COST]), flush=True)
        write_docs(runs, docs)
        return
    for size_text in args.sizes.split(","):
        run = bench_size(size_text, Path(args.work), rows)
        runs[size_text] = run
        print(table(run), flush=True)
        write_docs(runs, docs)


if __name__ == "__main__":
    main()
