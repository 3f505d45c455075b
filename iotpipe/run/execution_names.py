"""Step Functions execution names: the rule AWS applies, and names built to stay within it.

Production code (the trigger's and the follow-up's names, PlanRun) and the local engine, which
refuses what AWS refuses, share this one rule.
"""

from __future__ import annotations

import hashlib
import re

MAX_EXECUTION_NAME_CHARS = 80
# whitespace, brackets < > { } [ ], wildcards ? *, special characters " # % \ ^ | ~ ` $ & , ; : /,
# control characters U+0000-001F and U+007F-009F, U+FFFE-FFFF, surrogates U+D800-DFFF.
_REFUSED_IN_NAMES = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def execution_name_problem(name: str) -> str | None:
    """Why Step Functions would refuse `name` as an execution name, or None if it accepts it."""
    if not 1 <= len(name) <= MAX_EXECUTION_NAME_CHARS:
        return f"must be 1 to {MAX_EXECUTION_NAME_CHARS} characters, got {len(name)}"
    refused = _REFUSED_IN_NAMES.search(name)
    if refused:
        return f"must not contain {refused.group()!r}"
    return None


def bounded_execution_name(base: str, suffix: str) -> str:
    """`base-suffix` within the name limit: a base too long is cut and tagged with a hash of it all.

    Deterministic (the same base and suffix give the same name, so a retried start is the same
    execution) and distinct for distinct bases.
    """
    name = f"{base}-{suffix}"
    if len(name) <= MAX_EXECUTION_NAME_CHARS:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = MAX_EXECUTION_NAME_CHARS - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-_')}-{digest}-{suffix}"
