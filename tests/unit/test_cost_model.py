"""The cost model docs/design.md carries is the one bench/cost_model.py computes, and it says what
its inputs imply: a transient cluster's start dominates small runs, the work dominates large ones."""

from __future__ import annotations

from pathlib import Path

from bench.cost_model import SCENARIOS, Scenario, emr_on_ec2, emr_serverless, table

ROOT = Path(__file__).resolve().parents[2]


def test_the_design_carries_the_table_the_model_computes():
    assert table() in (ROOT / "docs" / "design.md").read_text()


def test_every_scenario_of_the_issue_is_estimated_for_both_runtimes():
    assert {(s.gib_per_day, s.runs_per_day) for s in SCENARIOS} == {
        (gib, runs) for gib in (0.1, 5.0, 100.0) for runs in (96, 1)
    }


def test_small_frequent_runs_pay_for_starting_clusters_and_large_daily_runs_for_the_work():
    small, large = Scenario(0.1, 96), Scenario(100.0, 1)
    assert emr_serverless(small).day_cost < emr_on_ec2(small).day_cost / 2
    assert emr_serverless(small).first_batch_seconds < emr_on_ec2(small).first_batch_seconds / 4
    ratio = emr_serverless(large).run_cost / emr_on_ec2(large).run_cost
    assert 0.8 < ratio < 1.2
    # Twice the data a run costs more on both (the model is not flat in the work).
    assert emr_on_ec2(Scenario(200.0, 1)).run_cost > emr_on_ec2(large).run_cost
    assert emr_serverless(Scenario(200.0, 1)).run_cost > emr_serverless(large).run_cost
