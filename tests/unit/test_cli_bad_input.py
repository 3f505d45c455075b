"""Bad input to the `iotpipe` command: one line on stderr, a non-zero exit, no traceback, and
nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def iotpipe(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_MAX_ATTEMPTS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "iotpipe.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


GENERATE = ["generate", "--size", "2MiB"]
TRANSFORM = ["transform", "--bronze", "bronze", "--gold", "gold", "--quarantine", "quarantine"]
UNREACHABLE = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

CASES = {
    "out is a file": (GENERATE + ["--out", "a-file"], {}),
    "out is below a file": (GENERATE + ["--out", "a-file/bronze"], {}),
    "out is unwritable": (GENERATE + ["--out", "/proc/iotpipe-bronze"], {}),
    "unreachable s3 endpoint": (GENERATE + ["--out", "s3://bronze/raw"], UNREACHABLE),
    "size overflows": (["generate", "--out", "bronze", "--size", "9" * 400], {}),
    "size beyond the bound": (["generate", "--out", "bronze", "--size", "100TiB"], {}),
    "object size of one byte": (GENERATE + ["--out", "bronze", "--object-size", "1"], {}),
    "nan defect rate": (GENERATE + ["--out", "bronze", "--defect-rates", "malformed_json=nan"], {}),
    "defect rate not a number": (GENERATE + ["--out", "bronze", "--defect-rates", "malformed_json=lots"], {}),
    "negative shards": (GENERATE + ["--out", "bronze", "--shards", "-1"], {}),
    "checkpoint is a file": (TRANSFORM + ["--checkpoint", "a-file"], {}),
    "zero files per trigger": (TRANSFORM + ["--checkpoint", "checkpoint", "--max-files-per-trigger", "0"], {}),
    "zero shuffle partitions": (TRANSFORM + ["--checkpoint", "checkpoint", "--shuffle-partitions", "0"], {}),
    "watch a file": (["watch", "--lake", "a-file", "--max-runs", "1"], {}),
    "run on a file": (["run", "--lake", "a-file", "--size", "2MiB"], {}),
    "run name with a slash": (["run", "--lake", "lake", "--size", "2MiB", "--name", "a/b"], {}),
    "run name escaping the lake": (["run", "--lake", "lake", "--size", "2MiB", "--name", ".."], {}),
    "run size overflows": (["run", "--lake", "lake", "--size", "9" * 400], {}),
    "run size beyond the bound": (["run", "--lake", "lake", "--size", "100TiB"], {}),
    # What PlanRun refuses, refused before the local engine starts or writes anything.
    "run with more shards than allowed": (["run", "--lake", "lake", "--size", "1MiB", "--shards", "100000"], {}),
    "run with shards under 1 MiB": (["run", "--lake", "lake", "--size", "1MiB", "--shards", "4"], {}),
    "run with too many resume attempts": (["run", "--lake", "lake", "--max-resume-attempts", "100000"], {}),
    "run with a quarantine ratio above one": (["run", "--lake", "lake", "--max-quarantine-ratio", "1.5"], {}),
    "run with an unknown reason's ratio": (
        ["run", "--lake", "lake", "--max-quarantine-ratio-by-reason", "no_such_reason=0.1"],
        {},
    ),
}
# Cases whose one line must also name the option at fault.
NAMED = {
    "devices beyond the bound": (GENERATE + ["--out", "bronze", "--devices", "99999999999999"], "--devices"),
    "a hundred million devices": (GENERATE + ["--out", "bronze", "--devices", "100000000"], "--devices"),
    "days beyond int64": (GENERATE + ["--out", "bronze", "--days", "999999999999"], "--days"),
    "days beyond the bound": (GENERATE + ["--out", "bronze", "--days", "100000"], "--days"),
    "negative seed": (GENERATE + ["--out", "bronze", "--seed", "-1"], "--seed"),
    "seed beyond the bound": (GENERATE + ["--out", "bronze", "--seed", "9" * 23], "--seed"),
    "seed not a number": (GENERATE + ["--out", "bronze", "--seed", "abc"], "--seed"),
    "run negative seed": (["run", "--lake", "lake", "--size", "2MiB", "--seed", "-1"], "--seed"),
    "run seed beyond the bound": (["run", "--lake", "lake", "--size", "2MiB", "--seed", str(2**63)], "--seed"),
    "run negative resume attempts": (["run", "--lake", "lake", "--max-resume-attempts", "-1"], "--max-resume"),
    "run reason ratios not pairs": (
        ["run", "--lake", "lake", "--max-quarantine-ratio-by-reason", "malformed_json"],
        "--max-quarantine-ratio-by-reason",
    ),
    "run nan duplicate ratio": (["run", "--lake", "lake", "--max-duplicate-ratio", "nan"], "--max-duplicate-ratio"),
    "run negative gold minimum": (["run", "--lake", "lake", "--min-gold-rows", "-1"], "--min-gold-rows"),
    "run unknown breach action": (["run", "--lake", "lake", "--on-breach", "panic"], "--on-breach"),
    "watch negative interval": (["watch", "--lake", "lake", "--interval", "-1"], "--interval"),
    "watch nan interval": (["watch", "--lake", "lake", "--interval", "nan"], "--interval"),
    "watch zero interval": (["watch", "--lake", "lake", "--interval", "0"], "--interval"),
    "watch infinite delay": (["watch", "--lake", "lake", "--delay", "inf"], "--delay"),
    "watch negative delay": (["watch", "--lake", "lake", "--delay", "-5"], "--delay"),
    "watch nan idle exit": (["watch", "--lake", "lake", "--idle-exit", "nan"], "--idle-exit"),
    "run horizon unit unknown": (["run", "--lake", "lake", "--dedup-horizon", "3 fortnights"], "--dedup-horizon"),
    "watch horizon too long": (["watch", "--lake", "lake", "--dedup-horizon", "1000000 days"], "--dedup-horizon"),
    "transform zero horizon": (TRANSFORM + ["--checkpoint", "c", "--dedup-horizon", "0 days"], "--dedup-horizon"),
}
CASES.update({case: (args, {}) for case, (args, _) in NAMED.items()})


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_a_non_zero_exit_and_writes_nothing(tmp_path, case):
    args, env = CASES[case]
    (tmp_path / "a-file").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))

    result = iotpipe(args, tmp_path, **env)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("iotpipe"), result.stderr
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("case", list(NAMED))
def test_a_value_out_of_range_is_refused_naming_its_option(tmp_path, case):
    args, option = NAMED[case]
    (tmp_path / "lake" / "bronze").mkdir(parents=True)

    result = iotpipe(args, tmp_path)

    assert result.returncode == 2, result.stderr
    assert option in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""


def test_running_out_of_memory_is_one_line_not_a_traceback(monkeypatch, capsys):
    from iotpipe import cli

    def exhaust(args):
        raise MemoryError()

    monkeypatch.setattr(cli, "cmd_generate", exhaust)
    code = cli.main(["generate", "--out", "bronze", "--size", "2MiB"])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "memory" in err.lower(), err


OLD_QUERY = "lake/artifacts/checkpoints/bronze-to-gold/gold/offsets/0"


@pytest.mark.parametrize(
    "args, existing, message",
    [
        (["run", "--lake", "lake", "--size", "2MiB", "--shards", "1"], [OLD_QUERY], "one query per sink"),
        (TRANSFORM + ["--checkpoint", "lake/artifacts/checkpoints/bronze-to-gold"], [OLD_QUERY], "one query per sink"),
        (TRANSFORM + ["--checkpoint", "checkpoint"], ["gold/_spark_metadata/0"], "plain Parquet written by an earlier"),
    ],
    ids=["run", "transform", "transform-over-plain-parquet-gold"],
)
def test_a_checkpoint_the_job_cannot_continue_is_one_line_and_nothing_is_written(tmp_path, args, existing, message):
    for folder in ("bronze", "gold", "quarantine"):
        (tmp_path / folder).mkdir()
    for path in existing:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n{}")
    before = sorted(tmp_path.rglob("*"))

    result = iotpipe(args, tmp_path)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_a_failed_runs_error_is_one_line_with_the_functions_message():
    from iotpipe.cli import error_line

    cause = json.dumps({"errorMessage": "the checkpoint\nwas written by an earlier job", "errorType": "X",
                        "stackTrace": ["  File a.py, line 1\n"]})  # fmt: skip
    assert error_line({"Error": "CheckpointLayoutUnsupported", "Cause": cause}) == (
        "CheckpointLayoutUnsupported: the checkpoint was written by an earlier job"
    )
    assert error_line({"Error": "States.Timeout", "Cause": None}) == "States.Timeout: "
    assert error_line(None) == "error: "
    # Whole: a refusal's message ends with what to do about it.
    long_refusal = {"Error": "E", "Cause": "x " * 500 + "then restore the checkpoint"}
    assert error_line(long_refusal).endswith("then restore the checkpoint")


def test_run_and_watch_show_a_failed_runs_error_alike():
    """`iotpipe run`'s report and `iotpipe watch`'s line give the same one-line error: the
    function's message, not a Lambda's JSON cause with its stack trace."""
    from iotpipe.cli import error_line, format_report
    from iotpipe.local.runner import Execution

    cause = json.dumps({"errorMessage": "Gold holds 3 rows\nthe commit 4", "stackTrace": ["  File v.py, line 9\n"]})
    failed = Execution("FAILED", None, "GoldVerificationFailed", cause, [], None, 1.0)
    assert failed.failure == {"Error": "GoldVerificationFailed", "Cause": cause}
    assert Execution("SUCCEEDED", {}, None, None, [], None, 1.0).failure is None
    records = {"input": 4, "gold": 3, "quarantined": 0, "duplicates": 0}
    report = {
        "status": "FAILED", "run_id": "r", "records": records, "quarantined_by_reason": {}, "gold_partitions": 1,
        "attempts": 1, "seconds": 1.0, "manifest": "m", "error": failed.failure, "spark_logs": "logs/spark-r.log",
    }  # fmt: skip
    shown = [line for line in format_report(report).splitlines() if line.startswith(("error", "spark log"))]
    assert shown == [
        "error                    GoldVerificationFailed: Gold holds 3 rows the commit 4",
        "spark log                logs/spark-r.log",  # where to read why a Spark attempt failed
    ]
    assert error_line(failed.failure) in shown[0]
    # A run whose VerifyGold failed has counts of 0: they do not "reconcile", they were not checked.
    reconciles = next(line for line in format_report(report).splitlines() if line.startswith("reconciles"))
    assert reconciles.endswith("not checked: the run has no verification (see error)")
    verified = {**report, "error": None, "reconciliation": {"reconciles": False, "difference": 1}}
    assert [line.split() for line in format_report(verified).splitlines() if line.startswith("reconciles")] == [
        ["reconciles", "NO:", "unaccounted", "1"]
    ]
