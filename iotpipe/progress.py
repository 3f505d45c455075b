"""Live progress of long local work (generator shards, Spark batches): one status line of bars
redrawn in place on a terminal; plain lines otherwise, at most one per source every few seconds.
The formatting is plain functions, so it is tested without a terminal."""

from __future__ import annotations

import threading
import time
from typing import Callable, TextIO

CLEAR_LINE = "\r\x1b[K"
STATUS_WIDTH = 160


def bar(done: float, total: float, width: int = 20) -> str:
    """`[########------------]  40%`; an unknown total (0) shows an empty bar."""
    share = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
    filled = int(share * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {share:4.0%}"


def spark_tasks_text(detail: dict) -> str:
    """`spark gold batch 3, quarantine batch 3: 12/40 tasks done (2 running, 3 stages)`."""
    batches = ", ".join(f"{query} batch {batch}" for query, batch in sorted(detail.get("batches", {}).items()))
    if not detail.get("stages"):
        return f"spark {batches}: between tasks (planning, committing or listing)"
    failed = f", {detail['failed']} failed" if detail.get("failed") else ""
    return (
        f"spark {batches}: {detail['done']:,}/{detail['tasks']:,} tasks done "
        f"({detail['running']} running, {detail['stages']} stages{failed})"
    )


def generator_text(detail: dict) -> str:
    """`generator shard 1: 12.0/32.0 MiB`."""
    return f"generator shard {detail['shard']}: {detail['bytes'] / 2**20:,.1f}/{detail['total'] / 2**20:,.1f} MiB"


class ProgressBoard:
    """Progress from several sources at once (shards run in parallel). Thread-safe."""

    def __init__(
        self, out: TextIO, tty: bool | None = None, every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.every = every
        self.clock = clock
        self._active: dict[str, tuple[str, float, float]] = {}
        self._printed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def update(self, key: str, text: str, done: float, total: float) -> None:
        with self._lock:
            self._active[key] = (text, done, total)
            if self.tty:
                self._draw()
            elif self.clock() - self._printed_at.get(key, float("-inf")) >= self.every:
                self._printed_at[key] = self.clock()
                self.out.write(f"{text}\n")
                self.out.flush()

    def finish(self, key: str) -> None:
        with self._lock:
            self._active.pop(key, None)
            self._printed_at.pop(key, None)
            if self.tty:
                self._draw()

    def line(self, text: str) -> None:
        """A line that stays (a state entered, a batch done), printed above the status line."""
        with self._lock:
            self.out.write(f"{CLEAR_LINE if self.tty else ''}{text}\n")
            if self.tty:
                self._draw()
            self.out.flush()

    def status_line(self) -> str:
        parts = [f"{text} {bar(done, total)}" for text, done, total in self._active.values()]
        return " | ".join(parts)[:STATUS_WIDTH]

    def _draw(self) -> None:
        self.out.write(CLEAR_LINE + self.status_line())
        self.out.flush()
