"""The quality policy: a run's counts against the thresholds a user set, the status a breach gives,
and where the rule, the figure and the threshold show (report, summary line, exit status)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from iotpipe.cli import build_parser, execution_input_of, run_exit_status
from iotpipe.lake.cleaning_rules import describe
from iotpipe.run.models import QualityOverrides, QualityPolicy, RunReport
from iotpipe.run.quality import QUALITY_FAILED, QUALITY_WARNING, evaluate, resolve_policy, status_with_quality
from iotpipe.run.report import summary_line
from iotpipe.run.settings import Settings

from .test_settings import ENV

ROOT = Path(__file__).resolve().parents[2]


def counts(input: int, gold: int, quarantined: int = 0, duplicates: int = 0) -> dict:
    return {"input": input, "gold": gold, "quarantined": quarantined, "duplicates": duplicates}


WARN = QualityPolicy()  # 5 % quarantined, 5 % duplicates, at least 1 Gold row, warn
FAIL = QualityPolicy(on_breach="fail")
BY_REASON = QualityPolicy(max_quarantine_ratio_by_reason={"malformed_json": 0.01, "missing_city": 0.0})

# (counts, quarantined by reason, policy, status before the quality check) -> (status, rules breached)
TABLE = {
    "the generator's normal output": (
        counts(100_000, 98_100, 1_400, 500), {"malformed_json": 200}, WARN, "SUCCEEDED",
        "SUCCEEDED", []),
    "quarantine exactly at the threshold": (
        counts(100, 95, 5), {}, WARN, "SUCCEEDED", "SUCCEEDED", []),
    "quarantine one record over": (
        counts(100, 94, 6), {}, WARN, "SUCCEEDED", QUALITY_WARNING, ["max_quarantine_ratio"]),
    "quarantine over, policy fails": (
        counts(100, 94, 6), {}, FAIL, "SUCCEEDED", QUALITY_FAILED, ["max_quarantine_ratio"]),
    "every record quarantined": (
        counts(1_000, 0, 1_000), {"malformed_json": 1_000}, FAIL, "SUCCEEDED",
        QUALITY_FAILED, ["max_quarantine_ratio", "min_gold_rows"]),
    "duplicates exactly at the threshold": (
        counts(1_000, 950, 0, 50), {}, WARN, "SUCCEEDED", "SUCCEEDED", []),
    "duplicates over": (
        counts(1_000, 949, 0, 51), {}, WARN, "SUCCEEDED", QUALITY_WARNING, ["max_duplicate_ratio"]),
    "gold exactly at the minimum": (
        counts(10, 1, 0, 9), {}, QualityPolicy(min_gold_rows=1, max_duplicate_ratio=1), "SUCCEEDED", "SUCCEEDED", []),
    "gold under the minimum": (
        counts(10, 9), {}, QualityPolicy(min_gold_rows=10), "SUCCEEDED", QUALITY_WARNING, ["min_gold_rows"]),
    "a run with zero input breaks no rule": (
        counts(0, 0), {}, QualityPolicy(min_gold_rows=1_000, on_breach="fail"), "SUCCEEDED", "SUCCEEDED", []),
    "one reason exactly at its threshold": (
        counts(1_000, 990, 10), {"malformed_json": 10}, BY_REASON, "SUCCEEDED", "SUCCEEDED", []),
    "one reason over its threshold, the total under": (
        counts(1_000, 989, 11), {"malformed_json": 11}, BY_REASON, "SUCCEEDED",
        QUALITY_WARNING, ["max_quarantine_ratio_by_reason.malformed_json"]),
    "a reason allowed zero appears once": (
        counts(1_000, 999, 1), {"missing_city": 1}, BY_REASON, "SUCCEEDED",
        QUALITY_WARNING, ["max_quarantine_ratio_by_reason.missing_city"]),
    "a reason with a threshold and no records": (
        counts(1_000, 1_000), {}, BY_REASON, "SUCCEEDED", "SUCCEEDED", []),
    "a step error with complete output is judged too": (
        counts(100, 50, 50), {}, WARN, "SUCCEEDED_WITH_STEP_ERROR", QUALITY_WARNING, ["max_quarantine_ratio"]),
    "an unreconciled run stays unreconciled": (
        counts(100, 50, 50), {}, FAIL, "UNRECONCILED", "UNRECONCILED", ["max_quarantine_ratio"]),
    "a failed run stays failed": (
        counts(100, 0, 100), {}, FAIL, "FAILED", "FAILED", ["max_quarantine_ratio", "min_gold_rows"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TABLE))
def test_counts_against_the_policy_give_the_status_and_the_breaches(case):
    records, by_reason, policy, status, expected_status, expected_rules = TABLE[case]
    breaches = evaluate(records, by_reason, policy)
    assert [breach.rule for breach in breaches] == expected_rules
    assert status_with_quality(status, breaches, policy) == expected_status


def test_a_breach_carries_the_figure_the_threshold_and_the_rules_description():
    breaches = evaluate(counts(1_000, 980, 20), {"malformed_json": 20}, BY_REASON)
    (breach,) = breaches
    assert breach.rule == "max_quarantine_ratio_by_reason.malformed_json"
    assert (breach.figure, breach.threshold) == (0.02, 0.01)
    assert "20 of 1,000" in breach.description and describe("malformed_json") in breach.description


def report_with(status: str, records: dict, by_reason: dict, policy: QualityPolicy) -> RunReport:
    breaches = evaluate(records, by_reason, policy)
    return RunReport(
        run_id="run-1",
        status=status_with_quality(status, breaches, policy),
        trigger="console",
        records=records,
        quarantined_by_reason=by_reason,
        gold_partitions=1,
        attempts=1,
        finished_at="2026-01-01T00:00:00+00:00",
        manifest="lake/artifacts/runs/run-1.json",
        quality_breaches=breaches,
        quality_policy=policy,
    )


def test_the_summary_line_names_the_rule_the_figure_and_the_threshold():
    report = report_with("SUCCEEDED", counts(1_000, 0, 1_000), {"malformed_json": 1_000}, FAIL)
    line = summary_line(report)
    assert line.startswith("iotpipe run run-1: QUALITY_FAILED")
    assert line.endswith("; quality: max_quarantine_ratio 100% > 5%, min_gold_rows 0 < 1")


def test_a_quality_failure_exits_non_zero_and_a_warning_zero():
    failed = report_with("SUCCEEDED", counts(100, 0, 100), {}, FAIL).model_dump()
    warned = report_with("SUCCEEDED", counts(100, 0, 100), {}, WARN).model_dump()
    assert run_exit_status([warned]) == 0
    assert run_exit_status([failed]) == 1 and run_exit_status([warned, failed]) == 1


def test_the_execution_input_overrides_the_deployments_policy_reason_by_reason():
    deployment = QualityPolicy(max_quarantine_ratio_by_reason={"malformed_json": 0.01, "missing_city": 0.0})
    overrides = QualityOverrides(max_duplicate_ratio=0.2, max_quarantine_ratio_by_reason={"missing_city": 0.5})
    policy = resolve_policy(deployment, overrides)
    assert policy.max_duplicate_ratio == 0.2 and policy.max_quarantine_ratio == deployment.max_quarantine_ratio
    assert policy.max_quarantine_ratio_by_reason == {"malformed_json": 0.01, "missing_city": 0.5}
    assert resolve_policy(deployment, None) == deployment


def test_the_deployments_policy_comes_from_the_environment():
    env = {
        **ENV,
        "QUALITY_MAX_QUARANTINE_RATIO": "0.1",
        "QUALITY_MAX_QUARANTINE_RATIO_BY_REASON": "malformed_json=0.01, missing_city=0",
        "QUALITY_MIN_GOLD_ROWS": "5",
        "QUALITY_MAX_DUPLICATE_RATIO": "0.2",
        "QUALITY_ON_BREACH": "fail",
    }
    assert Settings.from_env(env).quality_policy() == QualityPolicy(
        max_quarantine_ratio=0.1,
        max_quarantine_ratio_by_reason={"malformed_json": 0.01, "missing_city": 0.0},
        min_gold_rows=5,
        max_duplicate_ratio=0.2,
        on_breach="fail",
    )


def test_the_policys_defaults_are_the_templates_defaults():
    """One default whether a run is local (Settings) or deployed (the template's parameters)."""
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CloudFormationLoader)
    parameters, env = template["Parameters"], template["Globals"]["Function"]["Environment"]["Variables"]
    defaults = Settings.for_local_lake("lake")
    for field in ("max_quarantine_ratio", "max_quarantine_ratio_by_reason", "min_gold_rows", "max_duplicate_ratio",
                  "on_breach"):  # fmt: skip
        parameter = env[f"QUALITY_{field.upper()}"]["Ref"]
        assert str(parameters[parameter]["Default"]) == str(getattr(defaults, f"quality_{field}")), field


class _CloudFormationLoader(yaml.SafeLoader):
    pass


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: loader.construct_scalar(node)}
                                            if isinstance(node, yaml.ScalarNode) else None)  # fmt: skip


def test_iotpipe_run_passes_its_quality_options_in_the_execution_input():
    args = build_parser().parse_args(
        [
            "run",
            "--max-quarantine-ratio",
            "0.1",
            "--max-quarantine-ratio-by-reason",
            "malformed_json=0.01",
            "--min-gold-rows",
            "3",
            "--on-breach",
            "fail",
        ]  # fmt: skip
    )
    assert execution_input_of(args)["quality"] == {
        "max_quarantine_ratio": 0.1,
        "max_quarantine_ratio_by_reason": {"malformed_json": 0.01},
        "min_gold_rows": 3,
        "on_breach": "fail",
    }
    assert "quality" not in execution_input_of(build_parser().parse_args(["run"]))


def test_a_reason_given_twice_is_refused_not_silently_overridden():
    from iotpipe.run.quality import parse_reason_ratios

    with pytest.raises(ValueError, match="given twice"):
        parse_reason_ratios("malformed_json=0.1,malformed_json=0.2")
