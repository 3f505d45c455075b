"""`iotpipe --help`: every option says what it is for and shows its default; the tests' fault
injection is not offered to users; `make run` runs with the defaults `iotpipe run --help` shows."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from iotpipe.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def help_of(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_of_every_command_says_what_it_is_for(command):
    undocumented = [
        action.option_strings[0] if action.option_strings else action.dest
        for action in subcommands()[command]._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("run", "--size SIZE Bronze bytes to generate, e.g. 64MiB, 5GiB (default: 64MiB)"),
        ("run", "(default: 2)"),
        ("run", "--lake DIR lake folder; mirrors the buckets (default: lake)"),
        ("watch", "(default: 2.0)"),
        ("report", "(default: 30)"),
        ("query", "(default: table)"),
    ],
)
def test_help_shows_each_default(command, shown, capsys):
    assert shown in help_of(command, capsys)


def test_an_option_without_a_default_shows_none(capsys):
    text = help_of("run", capsys)
    assert "(default: None)" not in text and "(default: False)" not in text


def test_the_tests_fault_injection_is_not_offered_but_still_accepted(capsys):
    assert "--fault" not in help_of("transform", capsys)
    args = build_parser().parse_args(
        ["transform", "--bronze", "b", "--gold", "g", "--quarantine", "q", "--checkpoint", "c", "--fault", "x"]
    )
    assert args.fault == "x"


def test_make_run_runs_with_the_defaults_iotpipe_run_shows():
    makefile = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(LAKE|SIZE|SHARDS|RUNTIME) \?= (\S+)$", makefile, re.MULTILINE))
    run = build_parser().parse_args(["run"])
    assert variables == {"LAKE": run.lake, "SIZE": run.size, "SHARDS": str(run.shards), "RUNTIME": run.runtime}
    assert "iotpipe run --lake $(LAKE) --size $(SIZE) --shards $(SHARDS) --runtime $(RUNTIME)" in makefile
