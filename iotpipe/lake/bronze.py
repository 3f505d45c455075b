"""Which Bronze objects the pipeline reads: one rule for the Spark job, the evidence and the trigger.

Producers write JSON Lines plain or gzip-compressed, under names like `part-1.jsonl`,
`events.JSON`, `batch.ndjson.gz` or Firehose's `stream-1-2026-11-27-...-uuid.gz`. Data suffixes
match case-insensitively; the gzip suffix must be `.gz` exactly, because Hadoop picks the
decompression codec by a case-sensitive suffix: an `x.GZ` would be read as raw compressed bytes,
so it is ignored instead (reason 'gzip-suffix-case'). Spark's file source never lists a name
(file or folder) starting with `.`, or with `_` unless it holds a `=` (Spark takes `_a=b` for
a partition folder), so those are hidden for every reader; anything else with another suffix
is another format. Objects that are not read are reported as ignored, never dropped without a
word. `tests/spark/test_bronze_objects.py` checks this rule against what Spark really reads.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

from __future__ import annotations

import json
import re
from typing import Dict, Iterable, List, Optional, Tuple

from iotpipe.lake.storage import IN_PROGRESS_SUFFIX, Storage, join

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson")
GZIP_SUFFIX = ".gz"
IGNORED_REASONS = ("hidden", "gzip-suffix-case", "other-format")


def _either_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in text)


# Hadoop's GlobFilter (Spark's `pathGlobFilter`) is case-sensitive: spell every data suffix's
# letters both ways; `.gz` stays lower case, the only spelling Hadoop decompresses.
SPARK_GLOB = "*{" + ",".join([_either_case(s) for s in DATA_SUFFIXES] + [GZIP_SUFFIX]) + "}"
_DATA = re.compile(r"\.(jsonl|json|ndjson)$", re.IGNORECASE)
_ANY_GZIP = re.compile(r"\.gz$", re.IGNORECASE)


def _hidden(segment: str) -> bool:
    return segment.startswith(".") or (segment.startswith("_") and "=" not in segment)


# The pipeline's own bookkeeping under the raw prefix (the generator's shard manifests): not data,
# and not worth reporting as ignored.
OWN_FOLDERS = ("_manifests/",)
# The Spark job notes objects it does not read, or could not read in full, under
# `<checkpoint>/ignored/`; ReportStatus reports each note once.
IGNORED_NOTES_DIR = "ignored"


def is_own_object(relative_key: str) -> bool:
    return relative_key.startswith(OWN_FOLDERS)


def ignored_reason(relative_key: str) -> Optional[str]:
    """Why an object under the Bronze root is not read (one of IGNORED_REASONS), or None if it is.

    `relative_key` is the object's key below the Bronze root (e.g. `seed-1/part-00001.jsonl`).
    """
    segments = [s for s in relative_key.split("/") if s]
    if not segments or any(_hidden(s) for s in segments):
        return "hidden"
    name = segments[-1]
    if name.endswith(GZIP_SUFFIX) or _DATA.search(name):
        return None
    return "gzip-suffix-case" if _ANY_GZIP.search(name) else "other-format"


def classify(uris: Iterable[str], root: str) -> Tuple[List[str], Dict[str, str]]:
    """The objects under `root` the job reads, and the others with why not. The pipeline's own
    bookkeeping and files still being written are neither."""
    prefix = root.rstrip("/") + "/"
    readable: List[str] = []
    ignored: Dict[str, str] = {}
    for uri in uris:
        relative = uri[len(prefix) :]
        if relative.endswith(IN_PROGRESS_SUFFIX) or is_own_object(relative):
            continue
        reason = ignored_reason(relative)
        if reason is None:
            readable.append(uri)
        else:
            ignored[uri] = reason
    return readable, ignored


def write_note(storage: Storage, checkpoint_uri: str, name: str, reasons: Dict[str, str]) -> dict:
    """Note objects (URI -> reason) for the run report, under `<checkpoint>/ignored/<name>.json`:
    a count, the count per reason and a few examples (iotpipe.run.report.collect_ignored reads it)."""
    by_reason: Dict[str, int] = {}
    for reason in reasons.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    note = {"count": len(reasons), "by_reason": by_reason, "examples": sorted(reasons)[:10]}
    storage.write_bytes(
        join(checkpoint_uri, IGNORED_NOTES_DIR, f"{name}.json"), json.dumps(note, sort_keys=True).encode()
    )
    return note
