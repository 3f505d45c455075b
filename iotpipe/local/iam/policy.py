"""A small IAM policy evaluator: enough of AWS's rules to decide the requests this stack makes.

Explicit Deny wins, then an Allow is needed, otherwise the request is implicitly denied.
Statements match on Action/NotAction (case-insensitive, `*` and `?` wildcards), Resource/
NotResource (case-sensitive wildcards) and Condition. Only the condition operators below are
understood; any other operator makes the evaluation refuse loudly, so a policy the evaluator
cannot read never passes by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not understand: refuse rather than guess."""


@dataclass(frozen=True)
class Request:
    """One authorization request: an action on a resource ARN, with its condition context."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed", "explicit deny" or "implicit deny"
    statement: str | None = None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcards: `*` any run of characters (also `/` and `:`), `?` one character."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _string_equals(pattern: str, value: str) -> bool:
    return pattern == value


def _string_like(pattern: str, value: str) -> bool:
    return _glob(pattern, value)


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals compare the six colon-separated parts, each with wildcards."""
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_glob(p, v) for p, v in zip(pattern_parts, value_parts))


def _bool(pattern: str, value: str) -> bool:
    return str(pattern).lower() == str(value).lower()


# operator -> (compare(policy value, request value), negated)
_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
    "Bool": (_bool, False),
}


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    if "${" in str(expected):
        raise UnsupportedPolicy(f"policy variables are not supported: {key}: {expected}")
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedPolicy(f"unknown condition set operator {qualifier!r} in {operator!r}")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    present = key in context
    if base == "Null":
        # Null: "true" means the key must be absent, "false" that it must be present.
        return all((not present) == _bool(value, "true") for value in _as_list(expected))
    if base not in _OPERATORS:
        raise UnsupportedPolicy(f"unknown condition operator {operator!r}")
    compare, negated = _OPERATORS[base]
    if not present:
        if if_exists:
            return True
        # A missing key fails a positive operator; negated operators hold (AWS semantics).
        return negated or qualifier == "ForAllValues"
    values = [str(v) for v in _as_list(context[key])]
    patterns = [str(p) for p in _as_list(expected)]

    def matches(value: str) -> bool:
        hit = any(compare(pattern, value) for pattern in patterns)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(matches(v) for v in values)
    return any(matches(v) for v in values)


def _conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, Any]) -> bool:
    if not condition:
        return True
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, block in condition.items()
        for key, expected in block.items()
    )


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    unknown = set(statement) - {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition",
                                "Principal", "NotPrincipal"}  # fmt: skip
    if unknown:
        raise UnsupportedPolicy(f"unknown statement elements {sorted(unknown)}")
    if "Action" in statement:
        action_hit = any(_glob(p, request.action, ignore_case=True) for p in _as_list(statement["Action"]))
    elif "NotAction" in statement:
        action_hit = not any(_glob(p, request.action, ignore_case=True) for p in _as_list(statement["NotAction"]))
    else:
        raise UnsupportedPolicy(f"statement without Action or NotAction: {statement}")
    if not action_hit:
        return False
    if "Resource" in statement:
        resource_hit = any(_glob(p, request.resource) for p in _as_list(statement["Resource"]))
    elif "NotResource" in statement:
        resource_hit = not any(_glob(p, request.resource) for p in _as_list(statement["NotResource"]))
    else:
        raise UnsupportedPolicy(f"statement without Resource or NotResource: {statement}")
    return resource_hit and _conditions_hold(statement.get("Condition"), request.context)


def statements_of(documents: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [s for document in documents for s in _as_list(document.get("Statement"))]


def evaluate(statements: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """Decide `request` against resolved statements (identity and resource policies together)."""
    allowed_by = None
    for statement in statements:
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement Effect must be Allow or Deny: {statement}")
        if not _statement_applies(statement, request):
            continue
        if effect == "Deny":
            return Decision(False, "explicit deny", statement.get("Sid"))
        allowed_by = allowed_by or statement.get("Sid") or "(no Sid)"
    if allowed_by:
        return Decision(True, "allowed", allowed_by)
    return Decision(False, "implicit deny")


__all__ = ["Decision", "Request", "UnsupportedPolicy", "evaluate", "statements_of"]
