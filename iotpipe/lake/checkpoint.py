"""Read the Spark query's checkpoint without Spark: its id, planned and committed batches, and the
Bronze objects its file source took into each batch.

A query checkpoint (`<checkpoint>/transform/`) holds `metadata` (the query's id, which the job
tags every table commit with), `offsets/<n>` (batch n planned), `commits/<n>` (batch n done)
and `sources/0/<n>` (the files batch n read; every 10 batches a `<n>.compact` holding all so
far). Spark keeps the last 100 of offsets and commits, so these listings stay bounded. Works on
local paths and s3:// URIs alike.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlparse

from iotpipe.lake.storage import Storage, is_s3, join

# The job's one streaming query reads Bronze once and writes every table with its batch ids;
# its checkpoint is this folder under the job's checkpoint root.
STREAMING_QUERY = "transform"
# Until the job parsed Bronze once, each sink had its own query and checkpoint folder.
TWO_QUERY_CHECKPOINTS = ("gold", "quarantine")
# Spark's file sink log, which Gold had before it was an Iceberg table.
FILE_SINK_LOG = "_spark_metadata"


def query_checkpoint(checkpoint_uri: str) -> str:
    return join(checkpoint_uri, STREAMING_QUERY)


class CheckpointLayoutUnsupported(RuntimeError):
    """The lake was written by an earlier layout, or its checkpoint is gone while its tables remain."""


def check_lake_layout(storage: Storage, checkpoint_uri: str, gold_uri: str, quarantine_uri: str) -> None:
    """Refuse, before anything runs, a lake an earlier iotpipe wrote in a layout this one cannot continue.

    Gold and the quarantine as plain Parquet written by Spark's file sink (a `_spark_metadata` log):
    this release keeps them as Iceberg tables, and adopting the old files would take in whatever
    a crashed attempt left there. And a checkpoint of the job that ran one query per sink.
    """
    old = [uri for uri in (gold_uri, quarantine_uri) if storage.list_first(join(uri, FILE_SINK_LOG) + "/", 1)]
    if old:
        raise CheckpointLayoutUnsupported(
            f"{', '.join(old)} hold{'s' if len(old) == 1 else ''} plain Parquet written by an earlier iotpipe "
            "(a _spark_metadata log): Gold and the quarantine are Iceberg tables now. Rebuild them from Bronze: "
            f"move {gold_uri}, {quarantine_uri} and {checkpoint_uri} aside (the next run reads every Bronze "
            "object again and writes the tables); README, 'Lakes written before the Iceberg tables'"
        )
    found = [q for q in TWO_QUERY_CHECKPOINTS if storage.list_first(join(checkpoint_uri, q, "offsets") + "/", 1)]
    if found:
        raise CheckpointLayoutUnsupported(
            f"the checkpoint {checkpoint_uri} was written by an earlier iotpipe job (one query per sink: "
            f"{', '.join(found)}), which this job cannot continue. Point the job at a new lake (new Gold, "
            "quarantine and checkpoint prefixes), or rebuild it from Bronze as above"
        )


def has_started(storage: Storage, checkpoint_uri: str) -> bool:
    """Whether the query ever planned a batch (a new query numbers its batches from 0)."""
    return bool(storage.list_first(join(query_checkpoint(checkpoint_uri), "offsets") + "/", 1))


def query_id(storage: Storage, checkpoint_uri: str) -> Optional[str]:
    """The streaming query's id (its checkpoint's `metadata`), which tags its table commits."""
    uri = join(query_checkpoint(checkpoint_uri), "metadata")
    if storage.stat(uri) is None:
        return None
    return json.loads(storage.read_bytes(uri).decode("utf-8").splitlines()[0])["id"]


_BATCH_FILE = re.compile(r"^(\d+)(\.compact)?$")


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _batch_files(storage: Storage, directory: str) -> Dict[int, Tuple[str, bool]]:
    """Batch id -> (uri, is_compact) of every log file in `directory` (hidden .crc files ignored)."""
    found: Dict[int, Tuple[str, bool]] = {}
    for info in storage.list(directory.rstrip("/") + "/"):
        match = _BATCH_FILE.match(_basename(info.uri))
        if match and "/" not in info.uri[len(directory.rstrip("/")) + 1 :]:
            found[int(match.group(1))] = (info.uri, bool(match.group(2)))
    return found


def batches_in(storage: Storage, directory: str) -> List[int]:
    return sorted(_batch_files(storage, directory))


def _log_entries(storage: Storage, uri: str) -> List[dict]:
    lines = storage.read_bytes(uri).decode("utf-8").splitlines()
    if not lines or not lines[0].startswith("v"):
        raise ValueError(f"not a Spark log file (no version line): {uri}")
    return [json.loads(line) for line in lines[1:] if line.strip()]


def logged_uri(path: str, base_uri: str) -> str:
    """The storage URI of a path as a Spark log spells it (a URL, percent-encoded)."""
    if is_s3(base_uri):
        parsed = urlparse(path)
        return f"s3://{parsed.netloc}{unquote(parsed.path)}" if parsed.netloc else path
    return unquote(urlparse(path).path) if path.startswith("file:") else path


@dataclass(frozen=True)
class CheckpointState:
    """What a query checkpoint says about progress: planned batches and committed batches."""

    offsets: List[int]
    commits: List[int]

    @property
    def last_planned(self) -> Optional[int]:
        return self.offsets[-1] if self.offsets else None

    @property
    def last_committed(self) -> Optional[int]:
        return self.commits[-1] if self.commits else None

    @property
    def has_uncommitted_batch(self) -> bool:
        return self.last_planned is not None and self.last_planned != self.last_committed


def read_checkpoint(storage: Storage, query_checkpoint_uri: str) -> CheckpointState:
    return CheckpointState(
        offsets=batches_in(storage, join(query_checkpoint_uri, "offsets")),
        commits=batches_in(storage, join(query_checkpoint_uri, "commits")),
    )


def batch_source_files(storage: Storage, query_checkpoint_uri: str, batch: int) -> List[str]:
    """The input files the query's file source took into one batch, as logged (URL-encoded).

    Reads the batch's own log file, or, once it is compacted away, the first compact file after it.
    """
    batches = _batch_files(storage, join(query_checkpoint_uri, "sources", "0"))
    holders = [b for b in batches if b >= batch and (b == batch or batches[b][1])]
    if not holders:
        return []
    entries = _log_entries(storage, batches[min(holders)][0])
    return [entry["path"] for entry in entries if int(entry.get("batchId", batch)) == batch]


def source_entries(storage: Storage, query_checkpoint_uri: str) -> List[dict]:
    """Every entry of the query's file source log: `path` (URL-encoded), `timestamp` (the file's
    modification time in ms when the source listed it) and `batchId`. Planned batches included."""
    directory = join(query_checkpoint_uri, "sources", "0")
    batches = _batch_files(storage, directory)
    compacts = [batch for batch, (_, compact) in batches.items() if compact]
    start = max(compacts) if compacts else 0
    entries: List[dict] = []
    for batch in sorted(b for b in batches if b >= start):
        entries.extend(_log_entries(storage, batches[batch][0]))
    return entries


def source_files(storage: Storage, query_checkpoint_uri: str) -> List[str]:
    """Every input file the query's file source has taken into a batch (its source log)."""
    return [entry["path"] for entry in source_entries(storage, query_checkpoint_uri)]


def committed_source_files(storage: Storage, query_checkpoint_uri: str) -> List[str]:
    """The input files of committed batches only. The file source logs a batch's files before the
    batch runs; a batch planned but not committed (a crash) is run again by the next query start,
    so its files are not done yet."""
    last = read_checkpoint(storage, query_checkpoint_uri).last_committed
    if last is None:
        return []
    return [e["path"] for e in source_entries(storage, query_checkpoint_uri) if int(e["batchId"]) <= last]


def read_times(storage: Storage, query_checkpoint_uri: str, base_uri: str) -> Dict[str, int]:
    """Storage URI -> the modification time (ms) the file source saw when it took the file."""
    return {logged_uri(e["path"], base_uri): int(e["timestamp"]) for e in source_entries(storage, query_checkpoint_uri)}
