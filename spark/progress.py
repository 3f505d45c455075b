"""How far the running batch has got, from Spark's own status tracker, printed by a daemon thread
in the driver so that a long batch is never silent: a line when the tasks move, and at least one
every `quiet_seconds`. It only reads Spark's status (stage and task counts), so the job's output is
the same with or without it. Locally `iotpipe run` and `iotpipe transform` show the lines as a
progress bar or plain lines; on EMR they go to the step's stdout log. Python 3.9 syntax.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable, Optional

_STDOUT = threading.Lock()


def emit_line(line: str) -> None:
    """One whole line to stdout: the job's threads (batches, task progress) print concurrently,
    and `print` writes the text and its newline separately, so two lines could be glued."""
    with _STDOUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


TASKS_PREFIX = "IOTPIPE_TASKS "
PROGRESS_SECONDS_CONF = "spark.iotpipe.progressSeconds"  # how often to look (default 5 s)


def task_counts(tracker) -> dict:
    """Each running stage's tasks, by stage id: (total, done, running, failed) (a pyspark StatusTracker)."""
    stages = [tracker.getStageInfo(stage) for stage in tracker.getActiveStageIds()]
    return {
        stage.stageId: (stage.numTasks, stage.numCompletedTasks, stage.numActiveTasks, stage.numFailedTasks)
        for stage in stages
        if stage is not None
    }


class BatchTasks:
    """The tasks of every stage the running batch has had so far, so that `done` never goes back
    within a batch: a stage that is no longer running has finished (all its tasks done, unless some
    failed), and a new stage adds its tasks."""

    def __init__(self) -> None:
        self.batch: object = None
        self.stages: dict = {}

    def update(self, running: dict, batch: object) -> dict:
        if batch != self.batch:
            self.batch, self.stages = batch, {}
        for stage_id, (total, done, active, failed) in self.stages.items():
            if stage_id not in running and active:
                self.stages[stage_id] = (total, total if not failed else done, 0, failed)
        for stage_id, (total, done, active, failed) in running.items():
            seen_done = self.stages.get(stage_id, (0, 0, 0, 0))[1]
            self.stages[stage_id] = (total, max(done, seen_done), active, failed)
        counts = list(self.stages.values())
        return {
            "stages": len(counts),
            "running_stages": len(running),
            "tasks": sum(c[0] for c in counts),
            "done": sum(c[1] for c in counts),
            "running": sum(c[2] for c in counts),
            "failed": sum(c[3] for c in counts),
        }


def batches_in_progress(queries: dict) -> dict:
    """The batch each query is on: the one after its last reported progress."""
    batches = {}
    for name, query in queries.items():
        last = query.lastProgress
        batches[name] = (last["batchId"] + 1) if last else 0
    return batches


class TaskProgress(threading.Thread):
    """Print `IOTPIPE_TASKS {...}` lines while the job runs (the running batch's tasks so far,
    BatchTasks); never raises into the job."""

    def __init__(
        self,
        read_counts: Callable[[], dict],
        read_batches: Callable[[], dict],
        interval: float = 5.0,
        quiet_seconds: float = 30.0,
        emit: Optional[Callable[[str], None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="iotpipe-task-progress", daemon=True)
        self.read_counts, self.read_batches = read_counts, read_batches
        self.interval, self.quiet_seconds = interval, quiet_seconds
        self.emit = emit or emit_line
        self.clock = clock
        self.stopped = threading.Event()
        self._last: Optional[dict] = None
        self.batch_tasks = BatchTasks()
        self._last_at = clock()

    def poll(self) -> Optional[str]:
        """One look at the tracker; the line to print, if the tasks moved or it has been quiet too long."""
        running, batches = self.read_counts(), self.read_batches()
        counts = self.batch_tasks.update(running, sorted(batches.items()))
        moved = counts["running_stages"] and counts != self._last
        if not moved and self.clock() - self._last_at < self.quiet_seconds:
            return None
        self._last, self._last_at = counts, self.clock()
        return TASKS_PREFIX + json.dumps({**counts, "batches": batches}, sort_keys=True)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                line = self.poll()
            except Exception:  # the job is stopping, or py4j is busy: progress is best effort
                continue
            if line:
                self.emit(line)

    def stop(self) -> None:
        self.stopped.set()
