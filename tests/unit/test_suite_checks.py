"""The checks of the whole suite (tests/conftest.py) fail when the recorded runs miss something."""

from __future__ import annotations

from tests.orchestration.harness import every_path, state_coverage
from tests.orchestration.test_fault_matrix import CASES, matrix_check


def complete_record() -> dict:
    """A record that enters every state and takes every Choice branch and Catch edge."""
    states, choices, catches = every_path()
    return {"states": sorted(states), "edges": sorted(choices), "catches": sorted(catches)}


def test_coverage_of_every_path_passes_and_each_missing_piece_is_named():
    complete = complete_record()
    line, missed = state_coverage([complete])
    assert missed == [] and line.startswith("state coverage:")
    without = [
        {**complete, "states": [s for s in complete["states"] if s != "VerifyGold"]},
        {**complete, "edges": complete["edges"][1:]},
        {**complete, "catches": complete["catches"][1:]},
    ]
    for record, expected in zip(without, ("state VerifyGold", "choice branch", "catch")):
        (problem,) = state_coverage([record])[1]
        assert problem.startswith(expected), problem
    # Two executions together cover what each covers.
    assert state_coverage(without)[1] == []


def test_the_matrix_check_names_a_case_that_did_not_pass_and_a_row_the_docs_lack():
    rows = [[c.name, c.fault, c.expected, "free"] for c in reversed(CASES)]
    table, problems = matrix_check(rows)
    assert problems == []
    assert table.index(f"| {CASES[0].name} |") < table.index(f"| {CASES[-1].name} |"), "rows in the order of CASES"
    _, problems = matrix_check(rows[1:])
    assert problems == [f"fault matrix: case '{CASES[-1].name}' did not pass"]
    _, problems = matrix_check([[CASES[0].name, "another fault", "FAILED", "free"], *rows[:-1]])
    assert problems == [f"docs/design.md lacks the fault matrix row for '{CASES[0].name}'"]
