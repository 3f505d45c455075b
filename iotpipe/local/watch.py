"""`iotpipe watch`: the S3 trigger, locally. Polls the lake's Bronze folder and, when new objects
have been quiet for the trigger delay (a burst becomes one run), makes the trigger's decision
and runs the same state machine with `{"generate": false}`.

Objects the job will not read (iotpipe.lake.bronze) start no run, as with the S3 trigger; the next
run's job notes them for its report. An object is processed once the query's source log lists
it; those logs store paths URL-encoded, so they are decoded before comparing (a key with a space,
`%`, `+` or a non-ASCII character is otherwise "unprocessed" for ever). Reading the source logs
grows with the lake's history: fine for a local poller, never done by a Lambda.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from iotpipe.lake.bronze import classify
from iotpipe.lake.checkpoint import logged_uri, query_checkpoint, source_files
from iotpipe.lake.storage import LocalStorage, Storage
from iotpipe.local.runner import LocalEngine
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import RUN_INPUT, decide


def bronze_objects(storage: Storage, bronze_uri: str) -> tuple[set[str], dict[str, str]]:
    """Bronze objects the job reads, and the others with why they are ignored (iotpipe.lake.bronze)."""
    readable, ignored = classify((info.uri for info in storage.list(bronze_uri)), bronze_uri)
    return set(readable), ignored


def processed_bronze(storage: Storage, bronze_uri: str, checkpoint_uri: str) -> set[str]:
    """Objects the query has taken into a batch, as storage URIs (source-log paths decoded)."""
    return {logged_uri(path, bronze_uri) for path in source_files(storage, query_checkpoint(checkpoint_uri))}


def unprocessed_bronze(storage: Storage, bronze_uri: str, checkpoint_uri: str) -> set[str]:
    """Readable Bronze objects the query has not taken into a batch yet (the source logs
    are read only when there is something to compare)."""
    readable, _ = bronze_objects(storage, bronze_uri)
    return readable - processed_bronze(storage, bronze_uri, checkpoint_uri) if readable else set()


@dataclass
class WatchedRun:
    name: str
    status: str
    objects: int
    seconds: float
    records: dict
    error: dict | None = None


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
) -> WatchSummary:
    settings: Settings = engine.settings
    storage = LocalStorage()
    leases = FileLeaseStore(settings.lease_store)
    summary = WatchSummary()
    idle_since = clock()
    # The objects a run failed on are not tried again until the waiting set changes, as the S3
    # trigger starts a run per upload, not per minute: a refusal would otherwise repeat each poll.
    failed_on: frozenset = frozenset()
    while max_runs is None or len(summary.runs) < max_runs:
        summary.polls += 1
        waiting = unprocessed_bronze(storage, settings.bronze_uri, settings.checkpoint_uri)
        now = clock()
        if waiting == failed_on:
            waiting = set()
        if not waiting:
            if idle_exit is not None and now - idle_since >= idle_exit:
                break
            time.sleep(interval)
            continue
        idle_since = now
        if now - newest_change(waiting) < delay:
            time.sleep(interval)
            continue
        # Arrived when first seen here, as an S3 object arrives when uploaded: a file's mtime may
        # be older than the lake (a copy that kept its times, a backfill).
        decision = decide(sorted(waiting), leases, settings.lease_key, settings.trigger_window_seconds, now, "watch")
        if decision.action != "start":
            time.sleep(interval)
            continue
        started = time.perf_counter()
        for execution in engine.run(RUN_INPUT, f"{decision.name}-{len(summary.runs) + 1}"):
            report = execution.report or {}
            run = WatchedRun(
                name=report.get("run_id", decision.name),
                status=report.get("status", execution.status),
                objects=len(waiting),
                seconds=round(time.perf_counter() - started, 1),
                records=report.get("records", {}),
                error=report.get("error") or execution.failure,
            )
            failed_on = frozenset(waiting) if run.status == "FAILED" else frozenset()
            summary.runs.append(run)
            if on_run:
                on_run(run)
        idle_since = clock()
    return summary
