"""The quality policy: a run's counts held to the thresholds a user set (template parameters, the
execution input, `iotpipe run` options). Plain functions over the report's counts.

A breach gives the run a distinct status, SUCCEEDED_WITH_QUALITY_WARNING or QUALITY_FAILED as the
policy's `on_breach` says, only where the run would otherwise have succeeded: FAILED, UNRECONCILED
and DEFERRED say more about a run than its quality can. The data is written and accounted for
either way.
"""

from __future__ import annotations

from iotpipe.lake.cleaning_rules import describe
from iotpipe.run.models import QualityBreach, QualityOverrides, QualityPolicy

QUALITY_WARNING = "SUCCEEDED_WITH_QUALITY_WARNING"
QUALITY_FAILED = "QUALITY_FAILED"
JUDGED = ("SUCCEEDED", "SUCCEEDED_WITH_STEP_ERROR")


def parse_reason_ratios(text: str) -> dict[str, float]:
    """`malformed_json=0.01,missing_city=0` (a template parameter, an `iotpipe run` option) as a
    mapping; the policy model checks the codes and the ratios' range."""
    ratios = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, sep, value = item.partition("=")
        if code.strip() in ratios:
            raise ValueError(f"reason {code.strip()!r} is given twice")
        try:
            ratios[code.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"not a reason=ratio pair: {item!r} (e.g. malformed_json=0.01)")
    return ratios


def resolve_policy(deployment: QualityPolicy, overrides: QualityOverrides | None) -> QualityPolicy:
    """The deployment's policy with the execution input's overrides on top."""
    if overrides is None:
        return deployment
    given = overrides.model_dump(exclude_none=True)
    by_reason = {**deployment.max_quarantine_ratio_by_reason, **given.pop("max_quarantine_ratio_by_reason", {})}
    return deployment.model_copy(update={**given, "max_quarantine_ratio_by_reason": by_reason})


def evaluate(records: dict, quarantined_by_reason: dict, policy: QualityPolicy) -> list[QualityBreach]:
    """Every rule of `policy` the counts break. Ratios are of the input records, and a figure equal
    to its threshold is no breach; a run without input breaks none."""
    total = records.get("input", 0)
    if total <= 0:
        return []
    breaches = []

    def ratio_rule(rule: str, count: int, threshold: float, what: str) -> None:
        if count / total > threshold:
            breaches.append(
                QualityBreach(
                    rule=rule,
                    figure=count / total,
                    threshold=threshold,
                    description=f"{count:,} of {total:,} input records {what}",
                )
            )

    ratio_rule("max_quarantine_ratio", records.get("quarantined", 0), policy.max_quarantine_ratio, "quarantined")
    for code, threshold in sorted(policy.max_quarantine_ratio_by_reason.items()):
        count = quarantined_by_reason.get(code, 0)
        what = f"quarantined as {code}: {describe(code)}"
        ratio_rule(f"max_quarantine_ratio_by_reason.{code}", count, threshold, what)
    ratio_rule("max_duplicate_ratio", records.get("duplicates", 0), policy.max_duplicate_ratio, "duplicates")
    gold = records.get("gold", 0)
    if gold < policy.min_gold_rows:
        breaches.append(
            QualityBreach(
                rule="min_gold_rows",
                figure=gold,
                threshold=policy.min_gold_rows,
                description=f"{gold:,} Gold rows from {total:,} input records",
            )
        )
    return breaches


def status_with_quality(status: str, breaches: list[QualityBreach], policy: QualityPolicy) -> str:
    """The run's status once its quality is judged: changed only for a run that would have succeeded."""
    if not breaches or status not in JUDGED:
        return status
    return QUALITY_FAILED if policy.on_breach == "fail" else QUALITY_WARNING


def format_breach(breach: QualityBreach) -> str:
    """`max_quarantine_ratio 8.12% > 5%`, `min_gold_rows 0 < 1`: the rule, the figure, the threshold."""
    if breach.rule == "min_gold_rows":
        return f"{breach.rule} {breach.figure:,.0f} < {breach.threshold:,.0f}"
    return f"{breach.rule} {_percent(breach.figure)} > {_percent(breach.threshold)}"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.6f}".rstrip("0").rstrip(".") + "%"
