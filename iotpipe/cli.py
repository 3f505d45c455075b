"""The `iotpipe` command: generate Bronze data, transform it with Spark, run the whole pipeline."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from generator.events import DEFAULT_DEFECT_RATES, EventSpec
from generator.shards import (
    DEFAULT_OBJECT_BYTES,
    GENERATOR_PROGRESS_ENV,
    GENERATOR_PROGRESS_PREFIX,
    DatasetPlan,
    shard_bytes,
    summarise,
    write_dataset,
)
from iotpipe.lake.checkpoint import CheckpointLayoutUnsupported, check_lake_layout
from iotpipe.lake.horizon import DEFAULT_HORIZON, horizon_argument
from iotpipe.lake.storage import LocalStorage, is_s3, join, storage_for
from iotpipe.lake.tables import DATABASE, LOCAL_CATALOG_FILE
from iotpipe.local.spark_submit import run_spark_job
from iotpipe.progress import ProgressBoard, generator_text, spark_tasks_text
from iotpipe.run.execution_names import execution_name_problem
from iotpipe.run.history import DEFAULT_LAST_RUNS, MAX_LAST_RUNS
from iotpipe.run.models import QualityBreach
from iotpipe.run.plan import plan_run
from iotpipe.run.quality import format_breach, parse_reason_ratios
from iotpipe.run.sizes import MAX_GENERATE_BYTES, parse_size
from iotpipe.run.spark_args import SparkJobArgs

# `iotpipe run` exits 0 only when every record of the run is accounted for (or it deferred) and
# its quality did not fail the policy (a quality warning exits 0).
RUN_ACCOUNTED_FOR = (
    "SUCCEEDED",
    "SUCCEEDED_WITH_STEP_ERROR",
    "DEFERRED",
    "SUCCEEDED_WITH_QUALITY_WARNING",
    "NOTHING_TO_DO",
)
MAX_SIZE_BYTES = MAX_GENERATE_BYTES  # more only with --allow-large (PlanRun: "allow_large")
MIN_OBJECT_BYTES = 64 * 2**10
# Generator shape bounds: device ids are six digits (dev-000000..dev-999999), and a century of
# days keeps every event time a four-digit year. The seed feeds numpy's SeedSequence, which takes
# any non-negative integer; the bound keeps it an int64, as the state machine's input carries it.
MAX_DEVICES = 1_000_000
MAX_DAYS = 36_500
MAX_SEED = 2**63 - 1


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (no usage block), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _object_size(text: str) -> int:
    size = _size(text)
    if size < MIN_OBJECT_BYTES:
        raise argparse.ArgumentTypeError(f"object size must be at least {MIN_OBJECT_BYTES // 1024} KiB, got {text!r}")
    return size


def _whole_number(low: int, high: int | None = None):
    """An argparse type: a whole number in [low, high]; argparse names the option in its error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from error
        if value < low or (high is not None and value > high):
            bounds = f"at least {low:,}" if high is None else f"between {low:,} and {high:,}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = "whole number"
    return parse


def _seconds(low: float, inclusive: bool):
    """An argparse type: a finite number of seconds, above `low` (or at least `low` if inclusive)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from error
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>=' if inclusive else '>'} {low:g}, got {text}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


_positive_int = _whole_number(1)


def add_horizon(parser) -> None:
    parser.add_argument(
        "--dedup-horizon",
        type=horizon_argument,
        default=DEFAULT_HORIZON,
        help=f"how long an event_id is remembered: '<n> days', '<n> weeks', '<n> hours' (default {DEFAULT_HORIZON})",
    )


def _execution_name(text: str) -> str:
    """Step Functions' rule (iotpipe.run.execution_names); the name is also a folder name in the lake."""
    if execution_name_problem(text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"not an execution name: {text!r} (1-80 characters; no spaces, '/', '..' or special characters)"
        )
    return text


def _defect_rates(text: str) -> dict:
    rates = dict(DEFAULT_DEFECT_RATES)
    for item in filter(None, text.split(",")):
        kind, _, value = item.partition("=")
        if kind not in rates:
            raise argparse.ArgumentTypeError(f"unknown defect kind {kind!r}; known: {', '.join(rates)}")
        try:
            rate = float(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"defect rate of {kind} is not a number: {value!r}") from error
        if not (math.isfinite(rate) and 0 <= rate < 1):
            raise argparse.ArgumentTypeError(f"defect rate of {kind} must be a number in [0, 1), got {value!r}")
        rates[kind] = rate
    return rates


def check_size(size: int, allow_large: bool) -> None:
    if size > MAX_SIZE_BYTES and not allow_large:
        raise ValueError(
            f"size {size / 2**30:,.1f} GiB is above the {MAX_SIZE_BYTES // 2**30} GiB a run may generate; "
            "pass --allow-large to generate it on purpose"
        )


def check_folder(uri: str, option: str, create: bool = False) -> None:
    """A local folder option must not name a file; with `create`, make it now, so an unwritable
    path fails before any work (an s3:// URI is checked by its first request)."""
    if is_s3(uri):
        return
    path = Path(uri)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {uri}: is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{option} {uri}: {parent} is a file, not a folder")
            break
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"{option} {uri}: cannot create the folder ({error.strerror})") from error


def check_bucket_reachable(uri: str) -> None:
    """Ask S3 for the bucket once, so an unreachable endpoint or a missing bucket fails before work."""
    import boto3

    from iotpipe.lake.storage import split_s3

    bucket, _ = split_s3(uri)
    boto3.client("s3").head_bucket(Bucket=bucket)


def add_generate(sub) -> None:
    parser = sub.add_parser("generate", help="write seeded synthetic IoT events into Bronze")
    parser.add_argument("--out", required=True, help="Bronze raw prefix: a folder or s3://bucket/prefix")
    parser.add_argument("--size", required=True, type=_size, help="total bytes, e.g. 64MiB, 5GiB")
    parser.add_argument("--allow-large", action="store_true", help=f"allow more than {MAX_SIZE_BYTES // 2**30} GiB")
    parser.add_argument("--shards", type=_positive_int, default=2, help="number of shards (default 2)")
    parser.add_argument("--shard-index", type=int, default=None, help="write only this shard (a Fargate task)")
    parser.add_argument(
        "--seed", type=_whole_number(0, MAX_SEED), default=1, help="seed (0..2**63-1); the same seed, the same bytes"
    )
    parser.add_argument(
        "--object-size", type=_object_size, default=DEFAULT_OBJECT_BYTES, help="bytes per object (128MiB)"
    )
    parser.add_argument("--devices", type=_whole_number(1, MAX_DEVICES), default=1000, help=f"1..{MAX_DEVICES:,}")
    parser.add_argument("--days", type=_whole_number(1, MAX_DAYS), default=7, help=f"1..{MAX_DAYS:,}")
    parser.add_argument(
        "--defect-rates",
        type=_defect_rates,
        default=dict(DEFAULT_DEFECT_RATES),
        help="overrides, e.g. malformed_json=0.01,duplicate=0",
    )
    parser.add_argument("--json", action="store_true", help="print the ground truth as JSON")
    parser.set_defaults(handler=cmd_generate)


def cmd_generate(args) -> int:
    check_size(args.size, args.allow_large)
    plan = DatasetPlan(
        out=args.out,
        seed=args.seed,
        size_bytes=args.size,
        shard_count=args.shards,
        object_bytes=args.object_size,
        spec=EventSpec(devices=args.devices, days=args.days, defect_rates=args.defect_rates),
    )
    shards = None if args.shard_index is None else [args.shard_index]
    if shards:
        plan.objects_of_shard(shards[0])
    if is_s3(args.out):
        check_bucket_reachable(args.out)
    check_folder(args.out, "--out", create=True)
    started = time.perf_counter()
    progress = generator_progress(plan, os.environ.get(GENERATOR_PROGRESS_ENV))
    manifests = write_dataset(plan, shards, on_progress=progress)
    seconds = time.perf_counter() - started
    truth = summarise([asdict(m) for m in manifests])
    truth["seconds"] = round(seconds, 3)
    truth["mb_per_s"] = round(truth["bytes"] / seconds / 1e6, 1)
    if args.json:
        print(json.dumps(truth, indent=2, sort_keys=True))
    else:
        print(
            f"wrote {truth['objects']} objects, {truth['records']:,} records, {truth['bytes'] / 2**20:,.1f} MiB "
            f"in {seconds:.1f} s ({truth['mb_per_s']} MB/s) to {args.out}"
        )
        print(
            f"ground truth: gold {truth['gold']:,}, duplicates {truth['duplicates']:,}, quarantined "
            + ", ".join(f"{k} {v:,}" for k, v in truth["quarantined"].items())
        )
    return 0


def generator_progress(plan: DatasetPlan, mode: str | None, every: float = 1.0, clock=time.monotonic):
    """`on_progress(shard, bytes)` for write_dataset: JSON lines on stdout for `iotpipe run`'s
    runner (mode "json", at most one a second), else a bar on a terminal or plain lines on stderr."""
    totals: dict[int, int] = {}
    printed_at: dict[int, float] = {}
    board = None if mode == "json" else ProgressBoard(sys.stderr)

    def show(shard: int, written: int) -> None:
        total = totals.setdefault(shard, shard_bytes(plan, shard))
        detail = {"shard": shard, "bytes": written, "total": total}
        if board:
            board.update(f"shard {shard}", generator_text(detail), written, total)
        elif clock() - printed_at.get(shard, float("-inf")) >= every:
            printed_at[shard] = clock()
            print(GENERATOR_PROGRESS_PREFIX + json.dumps(detail), flush=True)

    return show


def add_transform(sub) -> None:
    parser = sub.add_parser("transform", help="run the Spark job locally (spark-submit) and print its summary")
    parser.add_argument("--bronze", required=True)
    parser.add_argument("--gold", required=True)
    parser.add_argument("--quarantine", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument(
        "--catalog",
        default=None,
        help="the tables' Iceberg catalog: 'glue', or 'jdbc:sqlite:FILE' "
        "(default: a SQLite file beside the checkpoint)",
    )
    parser.add_argument("--catalog-database", default=DATABASE, help=f"the catalog's database (default {DATABASE})")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--max-files-per-trigger", type=_positive_int, default=8)
    parser.add_argument("--shuffle-partitions", type=_positive_int, default=4)
    add_horizon(parser)
    parser.add_argument(
        "--fault",
        default=os.environ.get("IOTPIPE_FAULT"),
        help="crash-mid-batch[:N] or fail-after-commit (tests); env IOTPIPE_FAULT",
    )
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.set_defaults(handler=cmd_transform)


def cmd_transform(args) -> int:
    for option in ("bronze", "gold", "quarantine"):
        check_folder(getattr(args, option), f"--{option}")
    # The job's own refusal, here too: one line, not a Spark log to read, and nothing created.
    check_lake_layout(storage_for(args.checkpoint), args.checkpoint, args.gold, args.quarantine)
    check_folder(args.checkpoint, "--checkpoint", create=True)
    run_id = args.run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    catalog = args.catalog or "jdbc:sqlite:" + str(Path(args.checkpoint).resolve() / LOCAL_CATALOG_FILE[-1])
    job = SparkJobArgs(
        bronze=args.bronze,
        gold=args.gold,
        quarantine=args.quarantine,
        checkpoint=args.checkpoint,
        run_id=run_id,
        catalog=catalog,
        catalog_database=args.catalog_database,
        max_files_per_trigger=args.max_files_per_trigger,
        shuffle_partitions=args.shuffle_partitions,
        dedup_horizon=args.dedup_horizon,
        fault=args.fault,
    )
    log_dir = ".iotpipe-logs" if is_s3(args.checkpoint) else join(args.checkpoint, "logs")
    log_path = join(log_dir, f"spark-{run_id}.log")

    board = ProgressBoard(sys.stdout)

    def show(progress: dict) -> None:
        if not args.json:
            board.finish("spark")
            board.line(f"  {batch_line(progress)}")

    def show_tasks(detail: dict) -> None:
        if not args.json:
            board.update("spark", spark_tasks_text(detail), detail["done"], detail["tasks"])

    result = run_spark_job(job.to_argv(), log_path, on_progress=show, on_tasks=show_tasks)
    board.finish("spark")
    if args.json:
        print(json.dumps({"exit_code": result.exit_code, "summary": result.summary, "log": log_path}, indent=2))
    else:
        if result.summary:
            print(format_summary(result.summary))
        print(f"spark-submit exit code {result.exit_code}; log: {log_path}")
    return result.exit_code


def batch_line(progress: dict) -> str:
    """One committed batch, as its commits recorded it."""
    seconds = f" in {progress['ms'] / 1000:.1f} s" if progress.get("ms") else ""
    return (
        f"batch {progress['batch']} committed: {progress['input']:,} lines -> gold {progress['gold']:,}, "
        f"quarantined {progress['quarantined']:,}, duplicates {progress['duplicates']:,}{seconds}"
    )


def format_summary(summary: dict) -> str:
    rows = [
        ("batches", summary["batches"]),
        ("input rows", summary["input_rows"]),
        ("gold rows", summary["gold_rows"]),
        ("quarantined rows", summary["quarantined_rows"]),
        ("duplicates", summary["duplicates"]),
        ("seconds", summary["seconds"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(
        f"{name:<{width}}  {value:>12,}" if isinstance(value, int) else f"{name:<{width}}  {value:>12}"
        for name, value in rows
    )


def add_run(sub) -> None:
    parser = sub.add_parser("run", help="run the whole pipeline (the Step Functions definition) on a local lake")
    parser.add_argument("--lake", default="lake", help="lake folder; mirrors the buckets (default ./lake)")
    parser.add_argument("--size", default="64MiB", help="Bronze bytes to generate (default 64MiB)")
    parser.add_argument("--allow-large", action="store_true", help=f"allow more than {MAX_SIZE_BYTES // 2**30} GiB")
    parser.add_argument("--shards", type=_positive_int, default=2)
    parser.add_argument(
        "--seed", type=_whole_number(0, MAX_SEED), default=None, help="0..2**63-1; default: from the execution name"
    )
    parser.add_argument(
        "--days", type=_whole_number(1, 3650), default=None, help="the generated events span this many days (default 7)"
    )
    parser.add_argument("--no-generate", action="store_true", help="process whatever Bronze holds (as the S3 trigger)")
    add_horizon(parser)
    parser.add_argument("--name", type=_execution_name, default=None, help="execution name (the run id)")
    parser.add_argument("--max-resume-attempts", type=_whole_number(0), default=None)
    parser.add_argument("--json", action="store_true", help="print the run report as JSON (progress goes to stderr)")
    quality = parser.add_argument_group("quality policy (default: the deployment's, see README)")
    quality.add_argument("--max-quarantine-ratio", type=_number, default=None, help="of the input records, 0..1")
    quality.add_argument(
        "--max-quarantine-ratio-by-reason", type=_reason_ratios, default=None, help="e.g. malformed_json=0.01,..."
    )
    quality.add_argument("--min-gold-rows", type=_whole_number(0), default=None, help="for a run that had input")
    quality.add_argument("--max-duplicate-ratio", type=_number, default=None, help="of the input records, 0..1")
    quality.add_argument(
        "--on-breach", choices=("warn", "fail"), default=None, help="warn (exit 0) or fail (QUALITY_FAILED, exit 1)"
    )
    parser.set_defaults(handler=cmd_run)


QUALITY_OPTIONS = (
    "max_quarantine_ratio",
    "max_quarantine_ratio_by_reason",
    "min_gold_rows",
    "max_duplicate_ratio",
    "on_breach",
)


def _number(text: str) -> float:
    """A finite number; its range is PlanRun's check (the execution input's), not argparse's."""
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from error
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _reason_ratios(text: str) -> dict:
    try:
        return parse_reason_ratios(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def run_exit_status(reports: list[dict]) -> int:
    """0 when every execution's records are accounted for and no quality policy failed; else 1."""
    return 0 if all(r["status"] in RUN_ACCOUNTED_FOR for r in reports) else 1


def progress_printer(out, started: float, tty: bool | None = None):
    """Events of a local run as lines on `out`, with live progress of generator shards and of the
    running Spark batch (a bar on a terminal, plain lines otherwise)."""
    board = ProgressBoard(out, tty)

    def show(kind: str, detail: dict) -> None:
        stamp = f"[{time.perf_counter() - started:6.1f}s]"
        if kind == "generator-progress":
            board.update(f"shard {detail['shard']}", f"{stamp}   {generator_text(detail)}", detail["bytes"],
                         detail["total"])  # fmt: skip
            return
        if kind == "spark-tasks":
            board.update("spark", f"{stamp}   {spark_tasks_text(detail)}", detail["done"], detail["tasks"])
            return
        if kind == "enter":
            line = detail["state"]
        elif kind == "generator":
            line = f"  generator shard {detail['shard']} started"
        elif kind == "generator-done":
            board.finish(f"shard {detail['shard']}")
            line = f"  generator shard {detail['shard']} finished (exit {detail['exit_code']})"
        elif kind == "batch":
            line = f"  spark {batch_line(detail)}"
        elif kind == "spark-done":
            board.finish("spark")
            line = f"  spark step {detail['step_id']} exited {detail['exit_code']}"
        elif kind == "task-failed":
            line = f"  task failed: {detail['error']}"
        elif kind == "follow-up":
            line = f"follow-up execution {detail['name']}"
        else:
            return
        board.line(f"{stamp} {line}")

    return show


def execution_input_of(args) -> dict:
    """The execution input `iotpipe run` starts the state machine with, as a console user would."""
    execution_input: dict = {"generate": not args.no_generate}
    if not args.no_generate:
        execution_input.update(size=args.size, shards=args.shards)
        if args.seed is not None:
            execution_input["seed"] = args.seed
        if args.days is not None:
            execution_input["days"] = args.days
    if args.max_resume_attempts is not None:
        execution_input["max_resume_attempts"] = args.max_resume_attempts
    if args.allow_large:
        execution_input["allow_large"] = True
    quality = {name: getattr(args, name) for name in QUALITY_OPTIONS if getattr(args, name) is not None}
    if quality:
        execution_input["quality"] = quality
    return execution_input


def cmd_run(args) -> int:
    from iotpipe.local.runner import LocalEngine

    if not args.no_generate:
        check_size(_size(args.size), args.allow_large)
    check_folder(args.lake, "--lake")
    execution_input = execution_input_of(args)
    out = sys.stderr if args.json else sys.stdout
    engine = LocalEngine(
        args.lake, on_event=progress_printer(out, time.perf_counter()), overrides={"dedup_horizon": args.dedup_horizon}
    )
    # PlanRun's own checks, before anything starts or is written: a bad input is one line (exit 2).
    plan_run(execution_input, args.name or "run", engine.settings, LocalStorage())
    with engine:
        executions = engine.run(execution_input, args.name)
    reports = [e.report or {"status": "FAILED", "error": e.failure} for e in executions]
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    else:
        for report in reports:
            print(format_report(report) if "records" in report else f"execution FAILED: {error_line(report['error'])}")
    return run_exit_status(reports)


def add_watch(sub) -> None:
    parser = sub.add_parser("watch", help="start a run whenever new objects land in the lake's Bronze folder")
    parser.add_argument("--lake", default="lake")
    parser.add_argument("--interval", type=_seconds(0, inclusive=False), default=2.0, help="seconds between polls")
    parser.add_argument(
        "--delay", type=_seconds(0, inclusive=True), default=10.0, help="quiet seconds after the last new object"
    )
    parser.add_argument("--max-runs", type=_positive_int, default=None)
    parser.add_argument(
        "--idle-exit", type=_seconds(0, inclusive=True), default=None, help="stop after this many idle seconds"
    )
    add_horizon(parser)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=cmd_watch)


def cmd_watch(args) -> int:
    from iotpipe.local.runner import LocalEngine
    from iotpipe.local.watch import watch

    check_folder(args.lake, "--lake")
    out = sys.stderr if args.json else sys.stdout
    started = time.perf_counter()

    def on_run(run) -> None:
        elapsed = time.perf_counter() - started
        print(
            f"[{elapsed:6.1f}s] run {run.name}: {run.status}, {run.objects} new objects, {run.seconds} s, "
            f"records {run.records}",
            file=out,
            flush=True,
        )
        if run.status == "FAILED":
            print(f"  {error_line(run.error)}", file=out, flush=True)
            print("  (not tried again until new objects arrive)", file=out, flush=True)

    print(f"watching {args.lake}/bronze/raw (poll {args.interval} s, delay {args.delay} s)", file=out, flush=True)
    with LocalEngine(args.lake, overrides={"dedup_horizon": args.dedup_horizon}) as engine:
        summary = watch(engine, args.interval, args.delay, args.max_runs, args.idle_exit, on_run=on_run)
    result = {
        "runs": len(summary.runs),
        "polls": summary.polls,
        "seconds": round(time.perf_counter() - started, 1),
        "run_seconds": [r.seconds for r in summary.runs],
        "statuses": [r.status for r in summary.runs],
    }
    print(json.dumps(result) if args.json else f"{result['runs']} runs in {result['seconds']} s", flush=True)
    return 0 if all(r.status != "FAILED" for r in summary.runs) else 1


def error_line(error: dict | None) -> str:
    """`Error: message` of a failed execution, on one line and whole (a refusal ends with what
    to do); a Lambda's cause (JSON with a stack trace) gives only its message."""
    error = error or {}
    cause = error.get("Cause") or ""
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{error.get('Error') or 'error'}: {' '.join(str(cause).split())}"


def add_query(sub) -> None:
    parser = sub.add_parser("query", help="run SQL over the lake's tables (gold, quarantine, runs, run_quarantine)")
    parser.add_argument("--lake", default="lake")
    parser.add_argument("sql", help='e.g. "select count(*) from gold"; docs/queries.md has more')
    parser.set_defaults(handler=cmd_query)


def cmd_query(args) -> int:
    from iotpipe.query import format_table, run_query

    if not Path(args.lake).is_dir():
        raise ValueError(f"--lake {args.lake}: no such folder (make one with `iotpipe run --lake {args.lake}`)")
    columns, rows = run_query(args.lake, args.sql)
    print(format_table(columns, rows))
    return 0


def maintenance_line(maintenance: dict) -> str:
    """What table maintenance did: files merged per table, or its error."""
    if maintenance.get("error"):
        return f"FAILED ({maintenance['error']}): {str(maintenance.get('cause'))[:200]}"
    parts = []
    for name, table in (maintenance.get("tables") or {}).items():
        merged = f"{table.get('files_rewritten', 0):,} files merged into {table.get('files_written', 0):,}"
        parts.append(f"{name}: {merged}, {table.get('files_before', 0):,} -> {table.get('files_after', 0):,} files")
    if maintenance.get("expiry_skipped"):
        parts.append(f"no snapshot expired: {maintenance['expiry_skipped']}")
    if maintenance.get("seconds") is not None:
        parts.append(f"in {maintenance['seconds']:.1f} s")
    return "; ".join(parts) or "nothing to do"


def reconciles_line(report: dict) -> str:
    """The report's own verdict on the counts (never a sum redone here); a run whose verification
    did not finish has no verdict."""
    reconciliation = report.get("reconciliation")
    if not reconciliation:
        return "not checked: the run has no verification" + (" (see error)" if report.get("error") else "")
    if reconciliation.get("reconciles"):
        return "yes"
    from iotpipe.run.report import reconciliation_problem

    return f"NO: {reconciliation_problem(reconciliation)}"


def format_report(report: dict) -> str:
    records = report["records"]
    rows = [
        ("status", report["status"]),
        ("run", report["run_id"]),
        ("input records", f"{records['input']:,}"),
        ("  gold", f"{records['gold']:,}"),
        ("  quarantined", f"{records['quarantined']:,}"),
        *((f"    {reason}", f"{n:,}") for reason, n in report["quarantined_by_reason"].items()),
        ("  duplicates", f"{records['duplicates']:,}"),
        ("reconciles", reconciles_line(report)),
        ("gold partitions written", f"{report['gold_partitions']:,}"),
        ("spark attempts", str(report["attempts"])),
        ("seconds", f"{report['seconds']}"),
        ("run manifest", report["manifest"]),
    ]
    for breach in report.get("quality_breaches") or []:
        rows.append(("quality breach", f"{format_breach(QualityBreach(**breach))}: {breach['description']}"))
    if report.get("step_error"):
        rows.append(("step error", f"{report['step_error'].get('verdict')}: {report['step_error'].get('reason')}"))
    if report.get("error"):
        rows.append(("error", error_line(report["error"])))
    if report.get("maintenance"):
        rows.append(("table maintenance", maintenance_line(report["maintenance"])))
    if report.get("spark_logs"):
        rows.append(("spark log", report["spark_logs"]))
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 40)
    return "\n".join([line, *(f"{name:<{width}}  {value}" for name, value in rows), line])


def add_report(sub) -> None:
    parser = sub.add_parser("report", help="the run history: a table, and with --html a page with charts")
    parser.add_argument("--lake", default="lake", help="lake folder (default ./lake)")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write the history as one HTML page")
    parser.add_argument(
        "--last", type=_whole_number(1, MAX_LAST_RUNS), default=DEFAULT_LAST_RUNS, help="how many runs, newest first"
    )
    parser.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from iotpipe.run.history import format_table, read_history
    from iotpipe.run.report_page import render_page
    from iotpipe.run.settings import Settings

    if is_s3(args.lake) or not Path(args.lake).is_dir():
        raise ValueError(f"--lake {args.lake}: no such folder")
    runs_uri = Settings.for_local_lake(str(Path(args.lake).resolve())).runs_uri
    runs = read_history(LocalStorage(), runs_uri, args.last)
    print(format_table(runs))
    if args.html:
        Path(args.html).write_text(render_page(runs), encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="iotpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate(sub)
    add_transform(sub)
    add_run(sub)
    add_watch(sub)
    add_report(sub)
    add_query(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except argparse.ArgumentTypeError as error:
        print(f"iotpipe {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, OSError, BotoCoreError, ClientError, CheckpointLayoutUnsupported) as error:
        print(f"iotpipe {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"iotpipe {args.command}: error: out of memory (try a smaller size or fewer devices)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
