"""The cleaning rules document describes every reason code the job can give, as the rule catalog
(iotpipe.lake.cleaning_rules) that the job and the report read states it."""

from __future__ import annotations

import re
from pathlib import Path

from iotpipe.lake.cleaning_rules import CLEANING_RULES, LINE_REASONS
from spark.transforms import REASON_CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "cleaning-rules.md"
ROW = re.compile(r"^\| (\d+) \| `([a-z0-9_]+)` \| ([^|]+) \| `([^`]+)` \|", re.MULTILINE)


def test_every_reason_code_has_a_row_with_an_example_line_in_priority_order():
    rows = ROW.findall(DOC.read_text())
    assert [(int(priority), code) for priority, code, _, _ in rows] == list(enumerate(REASON_CODES, start=1))
    assert all(example.strip() or code == "blank_line" for _, code, _, example in rows)


def test_the_document_states_each_rule_and_threshold_as_the_catalog_does():
    described = {code: rule.strip() for _, code, rule, _ in ROW.findall(DOC.read_text())}
    assert described == {rule.code: rule.description for rule in CLEANING_RULES}


def test_the_job_counts_by_the_catalogs_codes_and_line_rules_come_first():
    assert tuple(rule.code for rule in CLEANING_RULES) == REASON_CODES
    assert REASON_CODES[: len(LINE_REASONS)] == LINE_REASONS
