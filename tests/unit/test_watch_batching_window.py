"""`iotpipe watch` waits for quiet (`delay`) before a run, but never longer than AWS's batching
window lets the S3 trigger wait: a steady upload stream still starts runs. Time is a fake clock."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from iotpipe.local.iam.stack import TEMPLATE, parse_template
from iotpipe.local.runner import Execution
from iotpipe.local.watch import watch
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import MAX_BATCHING_WINDOW_SECONDS

START = 1_800_000_000.0


class SteadyUploads:
    """A fake clock whose every sleep lets a producer upload one more object, stamped with the
    clock's time; it gives up after an hour of fake time."""

    def __init__(self, bronze: Path, every: float) -> None:
        self.bronze, self.every, self.now, self.uploaded = bronze, every, START, 0
        self.upload()

    def upload(self) -> None:
        path = self.bronze / f"part-{self.uploaded:05d}.jsonl"
        path.write_bytes(b"{}\n")
        os.utime(path, (self.now, self.now))
        self.uploaded += 1

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert self.now - START < 3600, "no run started within an hour of steady uploads"
        self.now += self.every
        self.upload()


def test_a_steady_upload_stream_starts_a_run_once_the_batching_window_is_full(tmp_path):
    settings = Settings.for_local_lake(str(tmp_path))
    bronze = Path(settings.bronze_uri)
    bronze.mkdir(parents=True)
    uploads = SteadyUploads(bronze, every=3.0)
    started_at = []

    def run(execution_input, name):
        started_at.append(uploads.now)
        yield Execution("SUCCEEDED", None, None, None, [], None, 0.0)

    watch(SimpleNamespace(settings=settings, run=run), interval=3.0, delay=5.0, max_runs=1,
          clock=uploads.clock, sleep=uploads.sleep)  # fmt: skip

    assert started_at and started_at[0] - START <= MAX_BATCHING_WINDOW_SECONDS + 3.0


def test_the_cap_is_the_longest_batching_window_the_triggers_event_source_allows():
    template = parse_template(TEMPLATE.read_text())
    event_source = template["Resources"]["StartFromBronzeEventsFunction"]["Properties"]["Events"]["BronzeEvents"]
    window = event_source["Properties"]["MaximumBatchingWindowInSeconds"]
    assert template["Parameters"][window["Ref"]]["MaxValue"] == MAX_BATCHING_WINDOW_SECONDS
