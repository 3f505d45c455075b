"""The `iotpipe` command: generate Bronze data, transform it with Spark, run the whole pipeline."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
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
from iotpipe.progress import ProgressBoard, RunProgress, generator_text, mib
from iotpipe.run.execution_names import execution_name_problem
from iotpipe.run.history import DEFAULT_LAST_RUNS, MAX_LAST_RUNS
from iotpipe.run.models import QualityBreach
from iotpipe.run.plan import plan_run
from iotpipe.run.quality import format_breach, parse_reason_ratios
from iotpipe.run.sizes import MAX_GENERATE_BYTES, parse_size
from iotpipe.run.spark_args import SparkJobArgs
from iotpipe.run.trigger import MAX_BATCHING_WINDOW_SECONDS

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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults in the help, but none for an option whose default is "not given" (None,
    False): its text says what happens then."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or isinstance(action.default, dict):
            return action.help
        return super()._get_help_string(action)


def add_command(sub, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description or summary, formatter_class=HelpFormatter)


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
        help="how long an event_id is remembered to recognise a later copy as a duplicate: '<n> hours', "
        "'<n> days' or '<n> weeks'",
    )


RUNTIMES = ("emr-on-ec2", "emr-serverless")
_RUNTIME_NAMES = {"ec2": "emr-on-ec2", "serverless": "emr-serverless"}


def add_runtime(parser) -> None:
    parser.add_argument(
        "--runtime",
        type=lambda name: _RUNTIME_NAMES.get(name, name),  # `serverless` and `ec2` for short
        choices=RUNTIMES,
        default="emr-on-ec2",
        help="the Spark runtime the stack is deployed with (SparkRuntime): the state machine runs the job as an EMR "
        "step or as an EMR Serverless job run, through that integration's API and IAM; locally both are the same "
        "spark-submit",
    )


def spark_line(spark: dict) -> str:
    """Where a run's Spark job ran, from its report."""
    if spark.get("runtime") == "emr-serverless":
        line = f"EMR Serverless, application {spark.get('application_id')}, job run {spark.get('job_run_id')}"
        return line + (f" ({spark['job_run_link']})" if spark.get("job_run_link") else "")
    return f"EMR on EC2, cluster {spark.get('cluster_id')}"


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
    parser = add_command(sub, "generate", "write seeded synthetic IoT events into Bronze")
    parser.add_argument("--out", required=True, metavar="URI", help="Bronze raw prefix: a folder or s3://bucket/prefix")
    parser.add_argument("--size", required=True, type=_size, help="total bytes, e.g. 64MiB, 5GiB")
    parser.add_argument("--allow-large", action="store_true", help=f"allow more than {MAX_SIZE_BYTES // 2**30} GiB")
    parser.add_argument("--shards", type=_positive_int, default=2, help="number of shards (Fargate tasks on AWS)")
    parser.add_argument("--shard-index", type=int, default=None, help="write only this shard (default: every shard)")
    parser.add_argument(
        "--seed", type=_whole_number(0, MAX_SEED), default=1, help="seed (0..2**63-1); the same seed, the same bytes"
    )
    parser.add_argument("--object-size", type=_object_size, default=DEFAULT_OBJECT_BYTES, metavar="SIZE",
                        help="bytes per object, e.g. 128MiB")  # fmt: skip
    parser.add_argument("--devices", type=_whole_number(1, MAX_DEVICES), default=1000,
                        help=f"number of devices, 1..{MAX_DEVICES:,}")  # fmt: skip
    parser.add_argument("--days", type=_whole_number(1, MAX_DAYS), default=7,
                        help=f"the events span this many days, 1..{MAX_DAYS:,}")  # fmt: skip
    parser.add_argument(
        "--defect-rates",
        type=_defect_rates,
        default=dict(DEFAULT_DEFECT_RATES),
        metavar="KIND=RATE,...",
        help="share of records with each defect, over the defaults, e.g. malformed_json=0.01,duplicate=0",
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
    mode = os.environ.get(GENERATOR_PROGRESS_ENV)
    board = None if mode == "json" else ProgressBoard(sys.stderr)
    try:
        manifests = write_dataset(plan, shards, on_progress=generator_progress(plan, mode, board=board))
    finally:
        if board:
            board.close()
    seconds = time.perf_counter() - started
    truth = summarise([asdict(m) for m in manifests])
    truth["seconds"] = round(seconds, 3)
    truth["mib_per_s"] = round(truth["bytes"] / seconds / 2**20, 1)
    if args.json:
        print(json.dumps(truth, indent=2, sort_keys=True))
    else:
        print(
            f"wrote {truth['objects']} objects, {truth['records']:,} records, {mib(truth['bytes'])} "
            f"in {seconds:.1f} s ({truth['mib_per_s']} MiB/s) to {args.out}"
        )
        print(
            f"ground truth: gold {truth['gold']:,}, duplicates {truth['duplicates']:,}, quarantined "
            + ", ".join(f"{k} {v:,}" for k, v in truth["quarantined"].items())
        )
    return 0


def generator_progress(
    plan: DatasetPlan, mode: str | None, every: float = 1.0, clock=time.monotonic, board: ProgressBoard | None = None
):
    """`on_progress(shard, bytes)` for write_dataset: JSON lines on stdout for `iotpipe run`'s
    runner (mode "json", at most one a second), else on `board` (a bar on a terminal, plain lines
    otherwise)."""
    totals: dict[int, int] = {}
    printed_at: dict[int, float] = {}

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
    parser = add_command(sub, "transform", "run the Spark job locally (spark-submit) and print its summary")
    parser.add_argument("--bronze", required=True, metavar="URI", help="Bronze raw prefix the job reads")
    parser.add_argument("--gold", required=True, metavar="URI", help="Gold table location")
    parser.add_argument("--quarantine", required=True, metavar="URI", help="quarantine table location")
    parser.add_argument("--checkpoint", required=True, metavar="URI", help="the streaming query's checkpoint folder")
    parser.add_argument(
        "--catalog",
        default=None,
        help="the tables' Iceberg catalog: 'glue', or 'jdbc:sqlite:FILE' "
        "(default: a SQLite file beside the checkpoint)",
    )
    parser.add_argument("--catalog-database", default=DATABASE, help="the catalog's database")
    parser.add_argument("--run-id", default=None, help="the run's id in the tables' commits (default: the time now)")
    parser.add_argument("--max-files-per-trigger", type=_positive_int, default=8, help="Bronze objects per batch")
    parser.add_argument("--shuffle-partitions", type=_positive_int, default=4, help="Spark's shuffle partitions")
    add_horizon(parser)
    # The tests' fault injection (crash-mid-batch[:N], fail-after-commit, ...): accepted, not offered.
    parser.add_argument("--fault", default=os.environ.get("IOTPIPE_FAULT"), help=argparse.SUPPRESS)
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

    progress = None if args.json else RunProgress(sys.stdout, time.perf_counter())
    started: list = []  # spark-submit leads its own process group: stopped here on Ctrl-C
    try:
        result = run_spark_job(
            job.to_argv(),
            log_path,
            on_progress=progress and (lambda batch: progress("batch", batch)),
            on_tasks=progress and (lambda tasks: progress("spark-tasks", tasks)),
            on_start=started.append,
        )
    except BaseException:
        for process in started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        raise
    finally:
        if progress:
            progress.close()
    if args.json:
        print(json.dumps({"exit_code": result.exit_code, "summary": result.summary, "log": log_path}, indent=2))
    else:
        if result.summary:
            print(format_summary(result.summary))
        print(f"spark-submit exit code {result.exit_code}; log: {log_path}")
    return result.exit_code


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
    parser = add_command(
        sub,
        "run",
        "run the whole pipeline (the Step Functions definition) on a local lake",
        "Run the whole pipeline (the Step Functions definition) on a local lake: generate Bronze, transform it "
        "with Spark into the Iceberg tables, verify, maintain, report. Ctrl-C ends it cleanly: its processes "
        "stopped, the lease released, the run recorded as INTERRUPTED.",
    )
    parser.add_argument("--lake", default="lake", metavar="DIR", help="lake folder; mirrors the buckets")
    parser.add_argument("--size", default="64MiB", help="Bronze bytes to generate, e.g. 64MiB, 5GiB")
    parser.add_argument("--allow-large", action="store_true", help=f"allow more than {MAX_SIZE_BYTES // 2**30} GiB")
    parser.add_argument("--shards", type=_positive_int, default=2,
                        help="generator shards, written in parallel (Fargate tasks on AWS)")  # fmt: skip
    parser.add_argument(
        "--seed", type=_whole_number(0, MAX_SEED), default=None, help="0..2**63-1 (default: from the execution name)"
    )
    parser.add_argument(
        "--days", type=_whole_number(1, 3650), default=None, help="the generated events span this many days (default 7)"
    )
    parser.add_argument("--no-generate", action="store_true", help="process whatever Bronze holds (as the S3 trigger)")
    add_horizon(parser)
    add_runtime(parser)
    parser.add_argument("--name", type=_execution_name, default=None,
                        help="execution name, which is the run id (default: run-<time>-<random>)")  # fmt: skip
    parser.add_argument("--max-resume-attempts", type=_whole_number(0), default=None, metavar="N",
                        help="how often a failed Spark step is resumed from its checkpoint (default 2)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the run report as JSON (progress goes to stderr)")
    quality = parser.add_argument_group("quality policy (default: the deployment's, see README)")
    quality.add_argument("--max-quarantine-ratio", type=_number, default=None, metavar="R",
                         help="quarantined records of the input, 0..1 (default 0.05)")  # fmt: skip
    quality.add_argument(
        "--max-quarantine-ratio-by-reason",
        type=_reason_ratios,
        default=None,
        metavar="CODE=R,...",
        help="per reason code, e.g. malformed_json=0.01 (default: none)",
    )
    quality.add_argument("--min-gold-rows", type=_whole_number(0), default=None, metavar="N",
                         help="Gold rows a run that had input must write (default 1)")  # fmt: skip
    quality.add_argument("--max-duplicate-ratio", type=_number, default=None, metavar="R",
                         help="duplicates of the input records, 0..1 (default 0.05)")  # fmt: skip
    quality.add_argument(
        "--on-breach",
        choices=("warn", "fail"),
        default=None,
        help="warn: exit 0 with a warning status; fail: QUALITY_FAILED, exit 1 (default warn)",
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


def progress_printer(out, started: float, tty: bool | None = None, **options) -> RunProgress:
    """Events of a local run as lines on `out`, with live progress of generator shards, of the
    running Spark batch and of any state that runs on without a word (iotpipe.progress)."""
    return RunProgress(out, started, tty, **options)


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
    progress = progress_printer(out, time.perf_counter())
    engine = LocalEngine(args.lake, on_event=progress,
                         overrides={"dedup_horizon": args.dedup_horizon, "spark_runtime": args.runtime})  # fmt: skip
    # PlanRun's own checks, before anything starts or is written: a bad input is one line (exit 2).
    plan_run(execution_input, args.name or "run", engine.settings, LocalStorage())
    try:
        with engine:
            executions = run_until_interrupted(engine, progress, lambda: engine.run(execution_input, args.name))
    finally:
        progress.close()
    if isinstance(executions, int):
        return executions
    reports = [e.report or {"status": "FAILED", "error": e.failure} for e in executions]
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    else:
        for report in reports:
            print(format_report(report) if "records" in report else f"execution FAILED: {error_line(report['error'])}")
    return run_exit_status(reports)


def run_until_interrupted(engine, progress, work, command: str = "run"):
    """`work()`, or, when SIGINT or SIGTERM arrives meanwhile, the run ended cleanly
    (iotpipe.local.interrupt): one line on stderr, and the exit status a shell gives the signal."""
    from iotpipe.local.interrupt import SIGNAL_EXIT, Interrupted, end_interrupted_run, signals_ignored

    try:
        return work()
    except Interrupted as stop:
        with signals_ignored():
            progress.close()
            # One line: what is being done, completed with what was done (it takes a few seconds).
            print(f"iotpipe {command}: ", end="", file=sys.stderr, flush=True)
            try:
                ended = end_interrupted_run(engine, stop.signal_name)
            except Exception as error:  # the run is stopped either way; say what was not cleaned up
                print(f"interrupted ({stop.signal_name}); clean-up failed: {' '.join(str(error).split())}",
                      file=sys.stderr, flush=True)  # fmt: skip
                return SIGNAL_EXIT.get(stop.signal_name, 1)
            print(ended.line(), file=sys.stderr, flush=True)
        return ended.exit_status


def add_watch(sub) -> None:
    parser = add_command(sub, "watch", "start a run whenever new objects land in the lake's Bronze folder")
    parser.add_argument("--lake", default="lake", metavar="DIR", help="lake folder whose bronze/raw/ is watched")
    parser.add_argument("--interval", type=_seconds(0, inclusive=False), default=2.0, metavar="S",
                        help="seconds between polls")  # fmt: skip
    parser.add_argument("--delay", type=_seconds(0, inclusive=True), default=10.0, metavar="S",
                        help="quiet seconds after the last new object before a run starts (a steady stream "
                        f"waits at most {MAX_BATCHING_WINDOW_SECONDS} s, as the S3 trigger's batching "
                        "window)")  # fmt: skip
    parser.add_argument("--max-runs", type=_positive_int, default=None, metavar="N",
                        help="stop after this many runs (default: no limit)")  # fmt: skip
    parser.add_argument("--idle-exit", type=_seconds(0, inclusive=True), default=None, metavar="S",
                        help="stop once nothing has arrived for this many seconds, counted from the start "
                        "or the last run (default: never)")  # fmt: skip
    add_horizon(parser)
    add_runtime(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (progress goes to stderr)")
    parser.set_defaults(handler=cmd_watch)


def watched_run_line(run) -> str:
    """A run `watch` started, on one line: its status, what it read and what became of it."""
    from iotpipe.run.report import format_duration

    objects = f"{run.objects:,} new object{'s' if run.objects != 1 else ''}"
    line = f"run {run.name}: {run.status} in {format_duration(run.seconds)}, {objects}"
    r = run.records
    if r:
        line += (f": input {r.get('input', 0):,} -> gold {r.get('gold', 0):,}, quarantined {r.get('quarantined', 0):,},"
                 f" duplicates {r.get('duplicates', 0):,}")  # fmt: skip
    if run.not_read.get("count"):
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in run.not_read.get("by_reason", {}).items())
        line += f"; {run.not_read['count']:,} not read ({reasons})"
    return line


def cmd_watch(args) -> int:
    from iotpipe.local.runner import LocalEngine
    from iotpipe.local.watch import watch

    check_folder(args.lake, "--lake")
    out = sys.stderr if args.json else sys.stdout
    started = time.perf_counter()
    progress = progress_printer(out, started)

    def on_run(run) -> None:
        progress.board.line(f"{progress.stamp()} {watched_run_line(run)}")
        if run.status == "FAILED":
            progress.board.line(f"  {error_line(run.error)}")
            progress.board.line("  (not tried again until new objects arrive)")

    print(f"watching {args.lake}/bronze/raw (poll {args.interval} s, delay {args.delay} s)", file=out, flush=True)
    try:
        overrides = {"dedup_horizon": args.dedup_horizon, "spark_runtime": args.runtime}
        with LocalEngine(args.lake, on_event=progress, overrides=overrides) as engine:
            # Idle time counts from the command's start: the engine's set-up is part of it.
            idle_exit = None if args.idle_exit is None else max(0.0, args.idle_exit - (time.perf_counter() - started))
            summary = run_until_interrupted(
                engine,
                progress,
                lambda: watch(engine, args.interval, args.delay, args.max_runs, idle_exit, on_run=on_run),
                "watch",  # fmt: skip
            )
    finally:
        progress.close()
    if isinstance(summary, int):
        return summary
    result = {
        "runs": len(summary.runs),
        "polls": summary.polls,
        "seconds": round(time.perf_counter() - started, 1),
        "run_seconds": [r.seconds for r in summary.runs],
        "statuses": [r.status for r in summary.runs],
    }
    runs = f"{result['runs']} run{'s' if result['runs'] != 1 else ''}"
    print(json.dumps(result) if args.json else f"{runs} in {result['seconds']} s", flush=True)
    return 0 if all(r.status != "FAILED" for r in summary.runs) else 1


def error_line(error: dict | None) -> str:
    """`Error: message` of a failed execution, on one line and whole (a refusal ends with what
    to do); a Lambda's cause (JSON with a stack trace) gives only its message."""
    from iotpipe.run.history import error_line as line

    return line(error)


def add_query(sub) -> None:
    from iotpipe.query import DEFAULT_TABLE_LIMIT, FORMATS

    parser = add_command(
        sub,
        "query",
        "run SQL over the lake's tables (gold, quarantine, runs, run_quarantine)",
        "Run SQL (DuckDB's dialect) over the lake's tables: gold, quarantine, runs, run_quarantine, the tables "
        "Athena has on AWS. Several statements separated by ';' run in order, each result printed after the "
        "other. csv and json stream their rows as DuckDB produces them; a table is printed once its rows are in.",
    )
    parser.add_argument("--lake", default="lake", metavar="DIR", help="lake folder")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: aligned columns; csv: a header line, then rows; json: one object per line",
    )
    parser.add_argument("--limit", type=_whole_number(0), default=None, metavar="N",
                        help=f"at most N rows per statement, 0 for all (default: {DEFAULT_TABLE_LIMIT:,} for a "
                        "table, all for csv and json)")  # fmt: skip
    parser.add_argument("sql", help='e.g. "select count(*) from gold"; docs/queries.md has more')
    parser.set_defaults(handler=cmd_query)


def cmd_query(args) -> int:
    from iotpipe.query import DEFAULT_TABLE_LIMIT, print_results

    if not Path(args.lake).is_dir():
        raise ValueError(f"--lake {args.lake}: no such folder (make one with `iotpipe run --lake {args.lake}`)")
    limit = args.limit if args.limit is not None else (DEFAULT_TABLE_LIMIT if args.format == "table" else 0)
    print_results(args.lake, args.sql, args.format, limit or None, sys.stdout)
    return 0


def maintenance_line(maintenance: dict) -> str:
    """What table maintenance did: files merged per table, or its error."""
    if maintenance.get("error"):
        return f"FAILED ({maintenance['error']}): {str(maintenance.get('cause'))[:200]}"
    if maintenance.get("not_due"):
        return f"not needed: {maintenance['not_due']}"
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


MAX_IGNORED_EXAMPLES = 5


def format_report(report: dict) -> str:
    from iotpipe.run.history import percent

    records = report["records"]

    def share(count: int) -> str:
        return f"{count:,} ({percent(count / records['input'])})" if records["input"] else f"{count:,}"

    rows = [
        ("status", report["status"]),
        ("run", report["run_id"]),
        ("input records", f"{records['input']:,}"),
        ("  gold", share(records["gold"])),
        ("  quarantined", share(records["quarantined"])),
        *((f"    {reason}", f"{n:,}") for reason, n in report["quarantined_by_reason"].items()),
        ("  duplicates", share(records["duplicates"])),
        ("reconciles", reconciles_line(report)),
        ("gold partitions written", f"{report['gold_partitions']:,}"),
        ("spark attempts", str(report["attempts"])),
        *((("spark", spark_line(report["spark"])),) if report.get("spark") else ()),
        ("seconds", f"{report['seconds']}"),
        ("run manifest", report["manifest"]),
    ]
    for breach in report.get("quality_breaches") or []:
        rows.append(("quality breach", f"{format_breach(QualityBreach(**breach))}: {breach['description']}"))
    if report.get("step_error"):
        rows.append(("step error", f"{report['step_error'].get('verdict')}: {report['step_error'].get('reason')}"))
    if report.get("error"):
        rows.append(("error", error_line(report["error"])))
    ignored = report.get("ignored_objects") or {}
    if ignored.get("count"):
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in ignored.get("by_reason", {}).items())
        rows.append(("objects not read", f"{ignored['count']:,} ({reasons})"))
        rows.extend(("", example) for example in ignored.get("examples", [])[:MAX_IGNORED_EXAMPLES])
    if report.get("maintenance"):
        rows.append(("table maintenance", maintenance_line(report["maintenance"])))
    if report.get("spark_logs"):
        rows.append(("spark log", report["spark_logs"]))
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 40)
    return "\n".join([line, *(f"{name:<{width}}  {value}" for name, value in rows), line])


def add_report(sub) -> None:
    parser = add_command(sub, "report", "the run history: a table, as JSON, or a page with charts (--html)")
    parser.add_argument("--lake", default="lake", metavar="DIR", help="lake folder")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write the history (or the run) as a page")
    parser.add_argument("--json", action="store_true", help="print the runs (or the run's report) as JSON")
    parser.add_argument("--last", type=_whole_number(1, MAX_LAST_RUNS), default=DEFAULT_LAST_RUNS, metavar="N",
                        help="how many runs, newest first")  # fmt: skip
    parser.add_argument("--run", default=None, metavar="RUN_ID", help="one run's report instead of the history")
    parser.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from iotpipe.run.history import format_table, read_history, read_run
    from iotpipe.run.report_page import relative_href, render_history_page, render_run_page, run_page_uri
    from iotpipe.run.settings import Settings

    if is_s3(args.lake) or not Path(args.lake).is_dir():
        raise ValueError(f"--lake {args.lake}: no such folder")
    storage = LocalStorage()
    runs_uri = Settings.for_local_lake(str(Path(args.lake).resolve())).runs_uri
    if args.run:
        found = read_run(storage, runs_uri, args.run)
        if found is None:
            raise ValueError(f"--run {args.run}: no report of that run in {args.lake}")
        report, verification = found
        if args.json:
            print(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True))
        else:
            print(format_report(report.model_dump(mode="json")))
        if args.html:
            Path(args.html).write_text(render_run_page(report, verification, history_href=None), encoding="utf-8")
            print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
        return 0
    runs = read_history(storage, runs_uri, args.last)
    if args.json:
        print(json.dumps([run.model_dump(mode="json") | {"quarantine_ratio": run.quarantine_ratio} for run in runs],
                         indent=2, sort_keys=True))  # fmt: skip
    else:
        print(format_table(runs))
    if args.html:
        page = str(Path(args.html).resolve())

        def run_href(run_id: str) -> str | None:
            exists = Path(run_page_uri(runs_uri, run_id)).is_file()
            return relative_href(page, runs_uri, run_id) if exists else None

        Path(args.html).write_text(render_history_page(runs, run_href=run_href), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
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
    from iotpipe.local.interrupt import SIGNAL_EXIT, Interrupted, signals_interrupt

    args = build_parser().parse_args(argv)
    try:
        with signals_interrupt():
            return args.handler(args)
    except argparse.ArgumentTypeError as error:
        print(f"iotpipe {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, OSError, BotoCoreError, ClientError, CheckpointLayoutUnsupported) as error:
        if isinstance(error, BrokenPipeError):
            return quiet_closed_pipe()
        print(f"iotpipe {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"iotpipe {args.command}: error: out of memory (try a smaller size or fewer devices)", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as stop:
        name = getattr(stop, "signal_name", "SIGINT")
        print(f"iotpipe {args.command}: interrupted ({name})", file=sys.stderr)
        return SIGNAL_EXIT.get(name, 130)


def quiet_closed_pipe() -> int:
    """The reader of our output went away (`| head`): that is the reader's choice, not an error.
    Later writes (the interpreter's last flush) go nowhere instead of failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
