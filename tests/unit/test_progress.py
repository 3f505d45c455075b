"""Live progress: bars on a terminal, plain lines otherwise, from the generator's shards and from
Spark's status tracker, formatted by plain functions (no terminal, no Spark needed)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from generator.events import EventSpec
from generator.shards import DatasetPlan, shard_bytes, write_shard
from iotpipe.cli import generator_progress, progress_printer
from iotpipe.progress import CLEAR_LINE, ProgressBoard, bar, spark_tasks_text
from spark.progress import TASKS_PREFIX, BatchTasks, TaskProgress, task_counts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_fills_with_the_share_done_and_never_overflows():
    assert bar(0, 10, width=10) == "[----------]   0%"
    assert bar(5, 10, width=10) == "[#####-----]  50%"
    assert bar(15, 10, width=10) == "[##########] 100%"
    assert bar(3, 0, width=10) == "[----------]   0%"


def test_off_a_terminal_progress_is_plain_lines_at_most_one_per_source_per_interval():
    out, clock = io.StringIO(), Clock()
    board = ProgressBoard(out, tty=False, every=10, clock=clock)
    board.update("shard 0", "shard 0: 1 MiB", 1, 4)
    clock.now = 5
    board.update("shard 0", "shard 0: 2 MiB", 2, 4)
    board.update("shard 1", "shard 1: 1 MiB", 1, 4)
    clock.now = 10
    board.update("shard 0", "shard 0: 3 MiB", 3, 4)
    board.line("batch 0 done")
    assert out.getvalue().splitlines() == ["shard 0: 1 MiB", "shard 1: 1 MiB", "shard 0: 3 MiB", "batch 0 done"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_on_a_terminal_one_status_line_of_bars_is_redrawn_under_the_lines_that_stay():
    out = io.StringIO()
    board = ProgressBoard(out, tty=True)
    board.update("shard 0", "shard 0", 1, 4)
    board.update("shard 1", "shard 1", 3, 4)
    assert out.getvalue().endswith(CLEAR_LINE + f"shard 0 {bar(1, 4)} | shard 1 {bar(3, 4)}")
    board.finish("shard 0")
    board.line("generator shard 0 finished")
    assert out.getvalue().endswith(CLEAR_LINE + "generator shard 0 finished\n" + CLEAR_LINE + f"shard 1 {bar(3, 4)}")


def test_a_local_runs_events_show_shards_and_spark_tasks_as_they_come():
    out = io.StringIO()
    show = progress_printer(out, started=0.0, tty=False)
    show("generator", {"shard": "0", "command": []})
    show("generator-progress", {"shard": "0", "bytes": 2**20, "total": 4 * 2**20})
    show("spark-tasks", {"stages": 2, "running_stages": 1, "tasks": 40, "done": 12, "running": 2, "failed": 0,
                         "batches": {"transform": 3}})  # fmt: skip
    lines = out.getvalue().splitlines()
    assert "generator shard 0 started" in lines[0]
    assert lines[1].endswith("generator shard 0: 1.0/4.0 MiB")
    assert lines[2].endswith("spark batch 3: 12/40 tasks done in 2 stages so far (2 running)")


def test_between_stages_the_spark_line_says_so():
    assert spark_tasks_text({"stages": 0, "batches": {"transform": 1}}) == (
        "spark batch 1: between stages (planning, committing or listing)"
    )


def spark_lines(events: list[tuple[str, dict]]) -> list[str]:
    out = io.StringIO()
    show = progress_printer(out, started=0.0, tty=False)
    show.board.every = 0  # every update printed
    for kind, detail in events:
        show(kind, detail)
    return [line.split("]", 1)[1].strip() for line in out.getvalue().splitlines()]


TASKS = {"stages": 1, "running_stages": 1, "tasks": 3, "done": 0, "running": 2, "failed": 0}
COMMITTED = {"input": 10, "gold": 8, "quarantined": 1, "duplicates": 1, "ms": 1500}


def test_before_its_first_commit_a_resumed_attempts_batch_is_not_given_a_number_it_does_not_know():
    """The job reports batch 0 until its query's first progress: on a lake with committed
    batches that is a lie (the query resumes at batch 2), so no number is shown."""
    lines = spark_lines([("spark", {"step_id": "s-1", "log": "l"}),
                         ("spark-tasks", {**TASKS, "batches": {"transform": 0}})])  # fmt: skip
    assert lines[-1] == "spark, first batch of this attempt: 0/3 tasks done in 1 stage so far (2 running)"


def test_the_running_batch_is_the_one_after_the_last_batch_the_step_committed():
    lines = spark_lines([
        ("spark", {"step_id": "s-1", "log": "l"}),
        ("batch", {"batch": 2, **COMMITTED}),
        ("spark-tasks", {**TASKS, "batches": {"transform": 0}}),
    ])  # fmt: skip
    assert lines[-2] == "spark batch 2 committed: 10 lines -> gold 8, quarantined 1, duplicates 1 in 1.5 s"
    assert lines[-1].startswith("spark batch 3: ")


def test_the_spark_status_has_no_bar_that_could_go_back_when_the_next_stage_starts():
    out = io.StringIO()
    show = progress_printer(out, started=0.0, tty=True)
    show("spark-tasks", {**TASKS, "done": 3, "batches": {"transform": 4}})
    show("spark-tasks", {**TASKS, "done": 0, "tasks": 8, "batches": {"transform": 4}})
    assert "%" not in out.getvalue() and "[#" not in out.getvalue()


def test_a_state_that_runs_on_silently_says_how_long_it_has_run_every_ten_seconds():
    out, clock = io.StringIO(), Clock()
    show = progress_printer(out, started=0.0, tty=False, clock=clock, tick_every=0)
    show("enter", {"state": "VerifyGold"})
    clock.now = 9
    show.tick()
    assert out.getvalue().splitlines() == ["[   0.0s] VerifyGold"]
    clock.now = 10.5
    show.tick()
    clock.now = 15
    show.tick()  # said 4.5 s ago
    clock.now = 21
    show.tick()
    assert out.getvalue().splitlines()[1:] == ["[  10.5s] VerifyGold: running for 10 s",
                                               "[  21.0s] VerifyGold: running for 21 s"]  # fmt: skip
    show("exit", {"state": "VerifyGold"})
    clock.now = 60
    show.tick()
    assert len(out.getvalue().splitlines()) == 3


def test_a_state_that_prints_progress_is_not_also_ticked():
    out, clock = io.StringIO(), Clock()
    show = progress_printer(out, started=0.0, tty=False, clock=clock, tick_every=0)
    show("enter", {"state": "RunSparkStep"})
    for second in range(5, 60, 5):
        clock.now = second
        show("spark-tasks", {**TASKS, "batches": {"transform": 1}})
        show.tick()
    assert not any("running for" in line for line in out.getvalue().splitlines())


def test_inside_a_map_the_ticker_names_the_map_once_an_iteration_ended():
    out, clock = io.StringIO(), Clock()
    show = progress_printer(out, started=0.0, tty=False, clock=clock, tick_every=0)
    for kind, state in [("enter", "GenerateShards"), ("enter", "GenerateShard"), ("exit", "GenerateShard")]:
        show(kind, {"state": state})
    clock.now = 12
    show.tick()
    assert out.getvalue().splitlines()[-1].endswith("GenerateShards: running for 12 s")


def test_on_a_terminal_the_status_line_ends_with_a_newline_when_the_command_ends():
    out = io.StringIO()
    board = ProgressBoard(out, tty=True)
    board.update("shard 0", "shard 0", 4, 4)
    board.close()
    assert out.getvalue().endswith(f"shard 0 {bar(4, 4)}\n")
    cleared = io.StringIO()
    board = ProgressBoard(cleared, tty=True)
    board.update("shard 0", "shard 0", 4, 4)
    board.finish("shard 0")
    board.close()
    assert cleared.getvalue().endswith(CLEAR_LINE)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_generate_on_a_terminal_ends_its_progress_line_before_its_summary(tmp_path, monkeypatch, capsys):
    from iotpipe import cli

    err = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", err)
    assert cli.main(["generate", "--out", str(tmp_path), "--size", "1MiB", "--shards", "1", "--devices", "5"]) == 0
    assert err.getvalue().endswith("\n") and "MiB" in err.getvalue()
    summary = capsys.readouterr().out
    assert " MiB/s" in summary and " MB" not in summary


@dataclass
class Stage:
    stageId: int
    numTasks: int
    numActiveTasks: int
    numCompletedTasks: int
    numFailedTasks: int


class Tracker:
    def __init__(self, stages: dict) -> None:
        self.stages = stages

    def getActiveStageIds(self):
        return list(self.stages) + [99]  # a stage that ended between the two calls

    def getStageInfo(self, stage):
        return self.stages.get(stage)


def test_task_counts_are_the_running_stages_tasks_by_stage():
    tracker = Tracker({1: Stage(1, 10, 2, 7, 0), 2: Stage(2, 4, 1, 0, 1)})
    assert task_counts(tracker) == {1: (10, 7, 2, 0), 2: (4, 0, 1, 1)}


def test_done_never_goes_back_within_a_batch_as_its_stages_come_and_go():
    """A serverless run printed 4/8 -> 0/2 -> 0/8 tasks within one batch: each line counted only the
    stages running at that moment."""
    batch = BatchTasks()
    polls = ({1: (8, 4, 4, 0)}, {2: (2, 0, 2, 0)}, {2: (2, 1, 1, 0), 3: (8, 0, 2, 0)}, {3: (8, 5, 2, 0)}, {},
             {4: (2, 0, 2, 0)})  # fmt: skip
    seen = [batch.update(running, [("transform", 0)])["done"] for running in polls]
    assert seen == sorted(seen) and seen[-1] == 8 + 2 + 8 + 0  # stages 1 to 3 finished: all their tasks
    counts = batch.update({4: (2, 1, 1, 0)}, [("transform", 0)])
    assert (counts["stages"], counts["tasks"], counts["done"], counts["running_stages"]) == (4, 20, 19, 1)
    assert batch.update({5: (4, 0, 4, 0)}, [("transform", 1)])["done"] == 0  # the next batch starts afresh


def test_the_drivers_progress_thread_prints_when_tasks_move_and_never_stays_quiet_long():
    clock, running = Clock(), {1: (10, 1, 2, 0)}
    progress = TaskProgress(lambda: dict(running), lambda: {"gold": 0}, quiet_seconds=30, clock=clock)
    first = progress.poll()
    assert first.startswith(TASKS_PREFIX)
    assert json.loads(first[len(TASKS_PREFIX) :]) == {"stages": 1, "running_stages": 1, "tasks": 10, "done": 1,
                                                      "running": 2, "failed": 0, "batches": {"gold": 0}}  # fmt: skip
    clock.now = 5
    assert progress.poll() is None  # nothing moved
    running[1] = (10, 2, 2, 0)
    assert progress.poll() is not None
    running.clear()
    clock.now = 20
    assert progress.poll() is None  # idle, quiet only briefly
    clock.now = 36
    assert json.loads(progress.poll()[len(TASKS_PREFIX) :])["running_stages"] == 0


def test_a_shard_reports_its_bytes_as_it_writes_them(tmp_path):
    plan = DatasetPlan(out=str(tmp_path), seed=1, size_bytes=4 * 2**20, shard_count=2, object_bytes=2**20,
                       spec=EventSpec(devices=10, days=1))  # fmt: skip
    seen: list[int] = []
    manifest = write_shard(plan, 1, on_progress=seen.append)
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == manifest.bytes
    assert abs(shard_bytes(plan, 1) - manifest.bytes) < 0.05 * manifest.bytes


def test_for_the_local_runner_a_shard_prints_json_lines_at_most_once_a_second(tmp_path, capsys):
    plan = DatasetPlan(out=str(tmp_path), seed=1, size_bytes=4 * 2**20, shard_count=2, object_bytes=2**20,
                       spec=EventSpec(devices=10, days=1))  # fmt: skip
    clock = Clock()
    show = generator_progress(plan, "json", every=1.0, clock=clock)
    show(0, 100)
    show(0, 200)
    clock.now = 1
    show(0, 300)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line.split(" ", 1)[1])["bytes"] for line in lines] == [100, 300]


def test_lines_the_jobs_threads_print_together_are_never_glued(capfd):
    """`iotpipe transform` parses the job's stdout line by line: the batch recorder and the task
    progress thread print at the same time, and two glued JSON lines failed the whole run."""
    import json
    import threading

    from spark.progress import emit_line

    def write(name):
        for i in range(300):
            emit_line("IOTPIPE_PROGRESS " + json.dumps({"thread": name, "i": i, "pad": "x" * 200}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = capfd.readouterr().out.splitlines()
    assert len(lines) == 6 * 300
    assert all(json.loads(line.removeprefix("IOTPIPE_PROGRESS "))["pad"] for line in lines)


def test_a_choice_state_is_not_printed_as_if_it_were_an_outcome():
    """`LeaseAcquired` is the choice that asks whether the lease was acquired, not a report that it was."""
    lines = spark_lines([("enter", {"state": "AcquireLease", "type": "TaskStateEntered"}),
                         ("enter", {"state": "LeaseAcquired", "type": "ChoiceStateEntered"}),
                         ("enter", {"state": "WaitForLease", "type": "WaitStateEntered"})])  # fmt: skip
    assert lines == ["AcquireLease", "WaitForLease"]
