"""Live progress of long local work (generator shards, Spark batches, each state of a run): one
status line redrawn in place on a terminal; plain lines otherwise, at most one per source every
few seconds. Every figure shown is one the work reported, never an estimate: a generator shard's
bytes against its planned bytes (a bar), the tasks of the running Spark batch's stages so far (no
bar: a batch's stages are not known in advance, so no share of the batch could be true), and how long
the current state has run. The formatting is plain functions, so it is tested without a terminal.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TextIO

CLEAR_LINE = "\r\x1b[K"
STATUS_WIDTH = 160
QUIET_SECONDS = 10.0  # a state that runs longer says so at least this often


def bar(done: float, total: float, width: int = 20) -> str:
    """`[########------------]  40%`; an unknown total (0) shows an empty bar."""
    share = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
    filled = int(share * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {share:4.0%}"


def mib(size: float) -> str:
    """Bytes in MiB, the one unit of sizes on the command line: `12.0 MiB`."""
    return f"{size / 2**20:,.1f} MiB"


def spark_tasks_text(detail: dict, batch: Optional[int] = None) -> str:
    """`spark batch 3: 12/40 tasks done in 2 stages so far (2 running)`: the batch's stages so far,
    so `done` never goes back within a batch (spark.progress.BatchTasks). `batch` is the batch the
    caller knows to be running; without it, the batch the job reported, when it knows one."""
    if batch is not None:
        label = f"spark batch {batch}"
    elif detail.get("batches"):
        # The job reports the batch after its query's last progress; before any progress (the
        # attempt's first batch, which a resumed query numbers on from its checkpoint) it cannot know.
        numbers = sorted(set(detail["batches"].values()))
        label = f"spark batch {numbers[0]}" if numbers and numbers[0] > 0 else "spark, first batch of this attempt"
    else:
        label = "spark"
    if not detail.get("running_stages"):
        return f"{label}: between stages (planning, committing or listing)"
    failed = f", {detail['failed']:,} failed" if detail.get("failed") else ""
    stages = f"{detail['stages']} stage{'s' if detail['stages'] != 1 else ''} so far"
    tasks = f"{detail['done']:,}/{detail['tasks']:,} tasks done in {stages}"
    return f"{label}: {tasks} ({detail['running']:,} running{failed})"


def generator_text(detail: dict) -> str:
    """`generator shard 1: 12.0/32.0 MiB`."""
    return f"generator shard {detail['shard']}: {detail['bytes'] / 2**20:,.1f}/{mib(detail['total'])}"


def seconds_text(seconds: float) -> str:
    """`45 s`, `3m 04s`: whole seconds."""
    whole = int(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60}m {whole % 60:02d}s"


class ProgressBoard:
    """Progress from several sources at once (shards run in parallel). Thread-safe."""

    def __init__(
        self, out: TextIO, tty: bool | None = None, every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.every = every
        self.clock = clock
        self._active: dict[str, tuple[str, Optional[float], Optional[float]]] = {}
        self._printed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._drawn = ""
        self.last_output = clock()

    def update(self, key: str, text: str, done: Optional[float] = None, total: Optional[float] = None) -> None:
        """Show `text` for `key`, with a bar when `total` is given."""
        with self._lock:
            self._active[key] = (text, done, total)
            if self.tty:
                self._draw()
            elif self.clock() - self._printed_at.get(key, float("-inf")) >= self.every:
                self._printed_at[key] = self.clock()
                self._write(f"{text}\n")

    def finish(self, key: str) -> None:
        with self._lock:
            self._active.pop(key, None)
            self._printed_at.pop(key, None)
            if self.tty:
                self._draw()

    def line(self, text: str) -> None:
        """A line that stays (a state entered, a batch done), printed above the status line."""
        with self._lock:
            self._write(f"{CLEAR_LINE if self.tty else ''}{text}\n")
            self._drawn = ""
            if self.tty:
                self._draw()

    def close(self) -> None:
        """End the status line, so that what is printed next starts on a line of its own: a status
        still showing stays on screen (a finished bar), an empty one is cleared."""
        with self._lock:
            if self.tty and self._drawn:
                self._write("\n")
            elif self.tty:
                self._write(CLEAR_LINE)
            self._drawn = ""

    def status_line(self) -> str:
        parts = [
            text if total is None else f"{text} {bar(done or 0, total)}" for text, done, total in self._active.values()
        ]
        return " | ".join(parts)[:STATUS_WIDTH]

    def _draw(self) -> None:
        self._drawn = self.status_line()
        self.out.write(CLEAR_LINE + self._drawn)
        self.out.flush()

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self.last_output = self.clock()


class RunProgress:
    """The events of a local run (iotpipe.local.runner's `on_event`) as lines on `out`: each state
    entered, generator shards and Spark batches as they finish, live progress of the shards and of
    the running Spark batch, and, for a state that runs on without a word, how long it has run
    (on a terminal in the status line, otherwise a line after `quiet` seconds of silence).

    Callable as `on_event(kind, detail)`; `close()` stops its ticker and ends the status line."""

    def __init__(
        self,
        out: TextIO,
        started: float,
        tty: bool | None = None,
        quiet: float = QUIET_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
        tick_every: float = 1.0,
    ) -> None:
        self.board = ProgressBoard(out, tty, every=quiet, clock=clock)
        self.started, self.quiet, self.clock, self.tick_every = started, quiet, clock, tick_every
        self._lock = threading.Lock()
        self._states: list[tuple[str, float]] = []  # the states running now (a Map's inside its own), since when
        self._committed: Optional[int] = None  # the last batch the running Spark step committed
        self._ticker: Optional[threading.Thread] = None
        self._stopped = threading.Event()

    def stamp(self) -> str:
        return f"[{self.clock() - self.started:6.1f}s]"

    def __call__(self, kind: str, detail: dict) -> None:
        if self._stopped.is_set():
            return
        self._start_ticker()
        stamp = self.stamp()
        if kind == "generator-progress":
            key = f"shard {detail['shard']}"
            self.board.update(key, f"{stamp}   {generator_text(detail)}", detail["bytes"], detail["total"])
            return
        if kind == "spark-tasks":
            with self._lock:
                running = None if self._committed is None else self._committed + 1
            self.board.update("spark", f"{stamp}   {spark_tasks_text(detail, running)}")
            return
        if kind == "enter":
            if detail.get("type") == "ChoiceStateEntered":
                return  # a decision, not work: its name (`LeaseAcquired`) would read as an outcome it may not be
            with self._lock:
                self._states.append((detail["state"], self.clock()))
            self.board.finish("state")
            line = detail["state"]
        elif kind == "exit":
            with self._lock:
                names = [name for name, _ in self._states]
                if detail["state"] in names:
                    del self._states[len(names) - 1 - names[::-1].index(detail["state"])]
            self.board.finish("state")
            return
        elif kind == "generator":
            line = f"  generator shard {detail['shard']} started"
        elif kind == "generator-done":
            self.board.finish(f"shard {detail['shard']}")
            line = f"  generator shard {detail['shard']} finished (exit {detail['exit_code']})"
        elif kind == "spark":
            with self._lock:
                self._committed = None
            line = f"  {spark_run(detail['step_id'])} started; its log: {detail['log']}"
        elif kind == "batch":
            with self._lock:
                self._committed = detail["batch"]
            line = f"  spark {batch_line(detail)}"
        elif kind == "spark-done":
            self.board.finish("spark")
            line = f"  {spark_run(detail['step_id'])} exited {detail['exit_code']}"
        elif kind == "task-failed":
            line = f"  task failed: {detail['error']}"
        elif kind == "follow-up":
            line = f"follow-up execution {detail['name']}"
        else:
            return
        self.board.line(f"{stamp} {line}")

    def tick(self) -> None:
        """How long the current state has run: always in a terminal's status line; elsewhere a
        line once nothing has been printed for `quiet` seconds."""
        with self._lock:
            if not self._states:
                return
            name, since = self._states[-1]
        now = self.clock()
        if now - since < self.quiet and not self.board.tty:
            return
        if not self.board.tty and now - self.board.last_output < self.quiet:
            return
        self.board.update("state", f"{self.stamp()} {name}: running for {seconds_text(now - since)}")

    def _start_ticker(self) -> None:
        if self._ticker is not None or self.tick_every <= 0:
            return
        with self._lock:
            if self._ticker is not None:
                return
            self._ticker = threading.Thread(target=self._tick_loop, name="iotpipe-progress-ticker", daemon=True)
        self._ticker.start()

    def _tick_loop(self) -> None:
        while not self._stopped.wait(self.tick_every):
            self.tick()

    def close(self) -> None:
        self._stopped.set()
        self.board.close()


def batch_line(progress: dict) -> str:
    """One committed batch, as its commits recorded it."""
    seconds = f" in {progress['ms'] / 1000:.1f} s" if progress.get("ms") else ""
    return (
        f"batch {progress['batch']} committed: {progress['input']:,} lines -> gold {progress['gold']:,}, "
        f"quarantined {progress['quarantined']:,}, duplicates {progress['duplicates']:,}{seconds}"
    )


def spark_run(run_id: str) -> str:
    """An EMR step (`s-...`) or an EMR Serverless job run, as a progress line names it."""
    return f"spark step {run_id}" if run_id.startswith("s-") else f"spark job run {run_id}"
