"""Which Bronze objects the pipeline reads: one rule for the Spark job, the evidence and the trigger.

Producers write JSON Lines plain or gzip-compressed, under names like `part-1.jsonl`,
`events.JSON`, `batch.ndjson.gz`, Firehose's `stream-1-2026-11-27-...-uuid.gz`, or, for
Firehose's uncompressed delivery, no suffix at all (`stream-1-2026-11-27-...-uuid`). Data
suffixes match case-insensitively; a name with no dot is read as plain text; the gzip suffix
must be `.gz` exactly, because Hadoop picks the decompression codec by a case-sensitive suffix:
an `x.GZ` would be read as raw compressed bytes, so it is ignored instead (reason
'gzip-suffix-case'). Spark's file source never lists a name (file or folder) starting with `.`,
or with `_` unless it holds a `=` (Spark takes `_a=b` for a partition folder), so those are
hidden for every reader; anything else with another suffix is another format. Objects that are
not read are reported as ignored, never dropped without a word.
`tests/spark/test_bronze_objects.py` checks this rule against what Spark really reads.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

from __future__ import annotations

import json
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from iotpipe.lake.storage import IN_PROGRESS_SUFFIX, ObjectInfo, Storage, join

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson")
GZIP_SUFFIX = ".gz"
IGNORED_REASONS = ("hidden", "gzip-suffix-case", "other-format")
# What the job's own checks add to the run report's ignored objects (spark/job.py): objects read
# only in part, objects read as text although gzip by content, objects rewritten after a read.
UNREADABLE, CORRUPT_GZIP, GZIP_WITHOUT_SUFFIX, CHANGED_AFTER_READ = (
    "unreadable", "corrupt-gzip", "gzip-without-suffix", "changed-after-read",
)  # fmt: skip
GZIP_MAGIC = b"\x1f\x8b"

# The name rule as one regular expression that reads the same in Python (with ASCII and DOTALL)
# and in Java, where Spark applies it to `_metadata.file_name` before any file is opened. Hadoop's
# glob (`pathGlobFilter`) cannot say "no dot in the name": it has no repetition of a character
# class. ASCII: Python would otherwise fold the long s (U+017F) to `s`, Java does not.
_SUFFIXES = "|".join(s.lstrip(".") for s in DATA_SUFFIXES)
READABLE_NAME = r"[^.]+|.*\.gz|.*\.(?i:" + _SUFFIXES + ")"
SPARK_NAME_PATTERN = "(?s)^(?:" + READABLE_NAME + r")\z"
_READABLE = re.compile(READABLE_NAME, re.ASCII | re.DOTALL)
_ANY_GZIP = re.compile(r"\.gz$", re.IGNORECASE)
# Characters Hadoop's glob gives a meaning; Spark's file source globs the path it loads.
GLOB_CHARACTERS = "\\[]{}*?"


def spark_load_path(uri: str) -> str:
    """`uri` as the file source's load path: glob characters escaped, so a lake under a folder
    named `lake[1]` is read, not taken for a pattern matching nothing."""
    return "".join("\\" + c if c in GLOB_CHARACTERS else c for c in uri)


def readable_name(name: str) -> bool:
    return _READABLE.fullmatch(name) is not None


def has_no_suffix(name: str) -> bool:
    return "." not in name


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
    if readable_name(name):
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


def changed_after_read(objects: Iterable[ObjectInfo], read_at: Mapping[str, int]) -> Dict[str, str]:
    """Objects whose modification time differs from the one the file source logged when it took
    them: rewritten under the same key. Spark's file source remembers paths and never reads them
    again. Its log holds no size or ETag; S3 and Java keep whole milliseconds (S3: seconds), so
    a difference under a millisecond is rounding, not a change."""
    changed = {}
    for info in objects:
        logged = read_at.get(info.uri)
        if logged is not None and abs(info.modified * 1000 - logged) >= 1:
            changed[info.uri] = CHANGED_AFTER_READ
    return changed


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
