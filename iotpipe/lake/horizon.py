"""The de-duplication horizon: how long an event_id is remembered (spark.dedup), as the job's
`--dedup-horizon`, the stack's DedupHorizon and the local `--dedup-horizon` spell it. Plain
Python: PlanRun checks it without Spark."""

from __future__ import annotations

import argparse
import re

DEFAULT_HORIZON = "7 days"
# About 27 years, and what the template's DedupHorizon pattern allows at most in each unit;
# much more and the store's date arithmetic would leave Python's calendar.
MAX_HORIZON_DAYS = 9999
_HOURS_PER = {"week": 168, "day": 24, "hour": 1}


def horizon_days(horizon: str) -> int:
    """Whole days of a horizon such as '7 days', '1 week' or '36 hours' (rounded up: ids are
    kept at least that long)."""
    match = re.fullmatch(r"\s*(\d+)\s*(week|day|hour)s?\s*", horizon.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"de-duplication horizon {horizon!r}: expected '<n> days', '<n> weeks' or '<n> hours'")
    days = -(-int(match.group(1)) * _HOURS_PER[match.group(2)] // 24)
    if days > MAX_HORIZON_DAYS:
        raise ValueError(f"de-duplication horizon {horizon!r}: at most {MAX_HORIZON_DAYS} days")
    return days


def horizon_argument(text: str) -> str:
    """`horizon_days` as an argparse type: a bad horizon is refused with its reason, before anything runs."""
    try:
        horizon_days(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text
