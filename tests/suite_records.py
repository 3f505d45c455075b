"""Checks of the whole suite, whatever processes ran its tests (`make test` runs two pytest-xdist
workers): the state machine's coverage across the orchestration tests, and the fault matrix's rows.

Each process appends what its tests saw to a file of its own, in a folder the first process
names; once every test has run, tests/conftest.py reads them all and runs the checks.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

RECORDS_ENV = "IOTPIPE_TEST_RECORDS"


def record(kind: str, value) -> None:
    """Note `value` under `kind` for the checks at the end of the suite (nothing outside one)."""
    folder = os.environ.get(RECORDS_ENV)
    if folder:
        with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as out:
            out.write(json.dumps({"kind": kind, "value": value}) + "\n")


def read_records(folder: str) -> dict[str, list]:
    records: dict[str, list] = defaultdict(list)
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            records[entry["kind"]].append(entry["value"])
    return records
