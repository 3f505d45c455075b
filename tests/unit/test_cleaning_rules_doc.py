"""The cleaning rules document describes every reason code the job can give."""

from __future__ import annotations

import re
from pathlib import Path

from spark.transforms import REASON_CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "cleaning-rules.md"


def test_every_reason_code_has_a_row_with_an_example_line_in_priority_order():
    rows = re.findall(r"^\| (\d+) \| `([a-z0-9_]+)` \| [^|]+ \| `([^`]+)` \|", DOC.read_text(), re.MULTILINE)
    assert [(int(priority), code) for priority, code, _ in rows] == list(enumerate(REASON_CODES, start=1))
    assert all(example.strip() or code == "blank_line" for _, code, example in rows)
