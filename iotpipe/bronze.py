"""Which Bronze objects the pipeline reads: one rule for the Spark job, the evidence and the trigger.

Producers write JSON Lines plain or gzip-compressed, under names like `part-1.jsonl`,
`events.JSON`, `batch.ndjson.gz` or Firehose's `stream-1-2026-11-27-...-uuid.gz`. Suffixes match
case-insensitively. Spark's file source never lists names (or folders) starting with `.` or
`_`, so those are hidden for every reader; anything else with another suffix is another format.
Objects that are not read are reported as ignored, never dropped without a word.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

from __future__ import annotations

import re
from typing import Optional

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson")
GZIP_SUFFIX = ".gz"


def _either_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in text)


# Hadoop's GlobFilter (Spark's `pathGlobFilter`) is case-sensitive: spell every letter both ways.
SPARK_GLOB = "*{" + ",".join(_either_case(s) for s in (*DATA_SUFFIXES, GZIP_SUFFIX)) + "}"
_READABLE = re.compile(r"(\.(jsonl|json|ndjson))?\.gz$|\.(jsonl|json|ndjson)$", re.IGNORECASE)


def ignored_reason(relative_key: str) -> Optional[str]:
    """Why an object under the Bronze root is not read ('hidden' or 'other-format'), or None if it is.

    `relative_key` is the object's key below the Bronze root (e.g. `seed-1/part-00001.jsonl`).
    """
    segments = [s for s in relative_key.split("/") if s]
    if not segments or any(s.startswith((".", "_")) for s in segments):
        return "hidden"
    return None if _READABLE.search(segments[-1]) else "other-format"


def is_readable(relative_key: str) -> bool:
    return ignored_reason(relative_key) is None
