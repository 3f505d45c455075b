"""`iotpipe watch`: the S3 trigger, locally. Polls the lake's Bronze folder and, when new objects
have been quiet for the trigger delay (a burst becomes one run), makes the trigger's decision
and runs the same state machine with `{"generate": false}`. A steady stream is never quiet: as
SQS's batching window holds a batch at most MAX_BATCHING_WINDOW_SECONDS, so does the wait here.

Objects the job will not read (iotpipe.lake.bronze) start no run, as with the S3 trigger; the next
run's job notes them for its report. An object is processed once a batch that took it is
committed: the query's source log lists a batch's objects before the batch runs, and a batch a
crash left uncommitted is run again when the query next starts, so its objects still wait and
start a run. Source logs store paths URL-encoded, so they are decoded before comparing (a key with
a space, `%`, `+` or a non-ASCII character is otherwise "unprocessed" for ever). Reading the source
logs grows with the lake's history: fine for a local poller, never done by a Lambda.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from iotpipe.lake.bronze import classify
from iotpipe.lake.checkpoint import committed_source_files, logged_uri, query_checkpoint
from iotpipe.lake.storage import LocalStorage, Storage
from iotpipe.local.runner import LocalEngine
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import MAX_BATCHING_WINDOW_SECONDS, RUN_INPUT, decide


def bronze_objects(storage: Storage, bronze_uri: str) -> tuple[set[str], dict[str, str]]:
    """Bronze objects the job reads, and the others with why they are ignored (iotpipe.lake.bronze)."""
    readable, ignored = classify((info.uri for info in storage.list(bronze_uri)), bronze_uri)
    return set(readable), ignored


def processed_bronze(storage: Storage, bronze_uri: str, checkpoint_uri: str) -> set[str]:
    """Objects the job reads that a committed batch took, as storage URIs (source-log paths decoded).
    The file source also logs the objects the job then leaves unread by name: not counted here."""
    logged = committed_source_files(storage, query_checkpoint(checkpoint_uri))
    readable, _ = classify((logged_uri(path, bronze_uri) for path in logged), bronze_uri)
    return set(readable)


def unprocessed_bronze(storage: Storage, bronze_uri: str, checkpoint_uri: str) -> set[str]:
    """Readable Bronze objects no committed batch has taken yet (the source logs are read only
    when there is something to compare)."""
    readable, _ = bronze_objects(storage, bronze_uri)
    return readable - processed_bronze(storage, bronze_uri, checkpoint_uri) if readable else set()


def batch_is_due(now: float, first_seen: float, last_change: float, delay: float) -> bool:
    """Whether waiting objects start a run: quiet for `delay` seconds since the last change, or
    waiting since `first_seen` as long as SQS's batching window ever holds a batch."""
    return now - last_change >= delay or now - first_seen >= MAX_BATCHING_WINDOW_SECONDS


@dataclass
class WatchedRun:
    name: str
    status: str
    objects: int  # the readable objects its committed batches took, those that arrived during it too
    seconds: float
    records: dict
    error: dict | None = None
    not_read: dict = field(default_factory=dict)  # the report's ignored_objects: count, by_reason, examples


@dataclass
class WatchSummary:
    runs: list[WatchedRun] = field(default_factory=list)
    polls: int = 0


def newest_change(paths: set[str]) -> float:
    return max((os.path.getmtime(p) for p in paths if os.path.exists(p)), default=0.0)


def watch(
    engine: LocalEngine,
    interval: float = 2.0,
    delay: float = 5.0,
    max_runs: int | None = None,
    idle_exit: float | None = None,
    on_run: Callable[[WatchedRun], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchSummary:
    settings: Settings = engine.settings
    storage = LocalStorage()
    leases = FileLeaseStore(settings.lease_store)
    summary = WatchSummary()
    idle_since = clock()
    first_seen: dict[str, float] = {}
    # Objects a run left waiting (it failed, or read none of them: a path Spark cannot read) are
    # not tried again until new ones arrive, as the S3 trigger starts a run per upload, not per
    # minute: the same run would otherwise start each poll.
    left_waiting: frozenset = frozenset()
    while max_runs is None or len(summary.runs) < max_runs:
        summary.polls += 1
        waiting = unprocessed_bronze(storage, settings.bronze_uri, settings.checkpoint_uri)
        now = clock()
        first_seen = {uri: first_seen.get(uri, now) for uri in waiting}
        new = waiting - left_waiting
        if not new:
            if idle_exit is not None and now - idle_since >= idle_exit:
                break
            sleep(interval)
            continue
        idle_since = now
        if not batch_is_due(now, min(first_seen[uri] for uri in new), newest_change(waiting), delay):
            sleep(interval)
            continue
        # Arrived when first seen here, as an S3 object arrives when uploaded: a file's mtime may
        # be older than the lake (a copy that kept its times, a backfill).
        decision = decide(sorted(waiting), leases, settings.lease_key, settings.trigger_window_seconds, now, "watch")
        if decision.action != "start":
            sleep(interval)
            continue
        started = time.perf_counter()
        processed = processed_bronze(storage, settings.bronze_uri, settings.checkpoint_uri)
        for execution in engine.run(RUN_INPUT, f"{decision.name}-{len(summary.runs) + 1}"):
            report = execution.report or {}
            processed_before = processed
            processed = processed_bronze(storage, settings.bronze_uri, settings.checkpoint_uri)
            run = WatchedRun(
                name=report.get("run_id", decision.name),
                status=report.get("status", execution.status),
                objects=len(processed - processed_before),
                seconds=round(time.perf_counter() - started, 1),
                records=report.get("records", {}),
                error=report.get("error") or execution.failure,
                not_read=report.get("ignored_objects") or {},
            )
            summary.runs.append(run)
            if on_run:
                on_run(run)
        left_waiting = frozenset(waiting - processed)
        idle_since = clock()
    return summary
