"""Read Spark's streaming evidence without Spark: the file sink log (`_spark_metadata`) and a
query checkpoint (`offsets/`, `commits/`, `sources/0/`).

Spark's file sink lists every committed data file in `<sink>/_spark_metadata/<batch>` (and,
every `compactInterval` batches, a `<batch>.compact` holding all files so far). Readers that
ignore this log (Glue crawlers, a plain glob; Athena reads manifests made from it) also see
files written by failed attempts; this module tells the two apart. Works on local paths and s3:// URIs alike.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from iotpipe.storage import Storage, is_s3, join

METADATA_DIR = "_spark_metadata"
# The job's one streaming query reads Bronze once and writes both sinks with the same batch ids;
# its checkpoint is this folder under the job's checkpoint root.
STREAMING_QUERY = "transform"
SINKS = ("gold", "quarantine")
# Until the job parsed Bronze once, each sink had its own query and checkpoint folder.
TWO_QUERY_CHECKPOINTS = ("gold", "quarantine")


def query_checkpoint(checkpoint_uri: str) -> str:
    return join(checkpoint_uri, STREAMING_QUERY)


# The de-duplication's store of the ids each batch wrote (spark.dedup), beside the query checkpoint.
SEEN_IDS = "seen-ids"


class CheckpointLayoutUnsupported(RuntimeError):
    """The checkpoint was written by the job that ran one query per sink, or is missing while the
    sinks or the seen-id store it wrote remain."""


def check_checkpoint_layout(storage: Storage, checkpoint_uri: str, sink_uris: tuple = ()) -> None:
    """Refuse a checkpoint the job cannot continue, before anything runs.

    A checkpoint of the two-query job: its sinks' batch ids drift apart, so the one query could
    not continue both sink logs. And no query checkpoint beside what one wrote (a checkpoint
    deleted or moved): a new query numbers its batches from 0, so a file sink that logged batches
    would skip every batch id it holds (those Bronze objects taken and never written), and the
    seen-id store's entries would turn the rebuild's rows into duplicates."""
    found = [q for q in TWO_QUERY_CHECKPOINTS if storage.list_first(join(checkpoint_uri, q, "offsets") + "/", 1)]
    if found:
        raise CheckpointLayoutUnsupported(
            f"the checkpoint {checkpoint_uri} was written by an earlier iotpipe job (one query per sink: "
            f"{', '.join(found)}), which this job cannot continue. Gold and the quarantine stay readable. "
            "Keep running the release that wrote it, or point the job at a new lake (new Gold, quarantine "
            "and checkpoint prefixes); docs/design.md, 'One parse, two sinks', says why."
        )
    if storage.list_first(join(query_checkpoint(checkpoint_uri), "offsets") + "/", 1):
        return
    logged = [uri for uri in sink_uris if _batch_files(storage, join(uri, METADATA_DIR) + "/")]
    if logged:
        raise CheckpointLayoutUnsupported(
            f"the sinks {', '.join(logged)} hold batches but the checkpoint {checkpoint_uri} has none: "
            "a new checkpoint would skip every batch id the sinks hold and lose those records. Restore "
            f"the checkpoint, or move the sinks and {join(checkpoint_uri, SEEN_IDS)} aside too so the job "
            "rebuilds them from Bronze"
        )
    if storage.list_first(join(checkpoint_uri, SEEN_IDS) + "/", 1):
        raise CheckpointLayoutUnsupported(
            f"{join(checkpoint_uri, SEEN_IDS)} remembers the ids of a query checkpoint that is gone: a new "
            "query would take its own rows for duplicates of them. Restore the checkpoint, or move the "
            "seen-id store aside too"
        )


_BATCH_FILE = re.compile(r"^(\d+)(\.compact)?$")


@dataclass(frozen=True)
class CommittedFile:
    uri: str
    size: int
    batch: int


def _basename(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _normalise(path: str, sink_uri: str) -> str:
    """Map a logged path (file:///..., s3://...) to the URI form the storage layer uses."""
    if is_s3(sink_uri):
        parsed = urlparse(path)
        return f"s3://{parsed.netloc}{unquote(parsed.path)}" if parsed.netloc else path
    return unquote(urlparse(path).path) if path.startswith("file:") else path


def _batch_files(storage: Storage, directory: str) -> dict[int, tuple[str, bool]]:
    """Batch id -> (uri, is_compact) of every log file in `directory` (hidden .crc files ignored)."""
    found: dict[int, tuple[str, bool]] = {}
    for info in storage.list(directory):
        match = _BATCH_FILE.match(_basename(info.uri))
        if match and "/" not in info.uri[len(directory.rstrip("/")) + 1 :]:
            found[int(match.group(1))] = (info.uri, bool(match.group(2)))
    return found


def committed_batches(storage: Storage, directory: str) -> list[int]:
    return sorted(_batch_files(storage, directory))


def _log_entries(storage: Storage, uri: str) -> list[dict]:
    lines = storage.read_bytes(uri).decode("utf-8").splitlines()
    if not lines or not lines[0].startswith("v"):
        raise ValueError(f"not a Spark log file (no version line): {uri}")
    return [json.loads(line) for line in lines[1:] if line.strip()]


def _file_entries(entries: list[dict]) -> list[dict]:
    """The entries Spark's reader takes for data files: every one but a directory. Spark 3.5 and 4
    read no `action` (the "delete" action is gone), so neither does this."""
    return [entry for entry in entries if not entry.get("isDir", False)]


def committed_files(storage: Storage, sink_uri: str) -> list[CommittedFile]:
    """Every data file the sink committed, from the latest compaction on. A path logged twice is
    listed twice, as Spark's reader reads it twice (Spark's own sink never logs a path twice)."""
    batches = _batch_files(storage, join(sink_uri, METADATA_DIR))
    compacts = [batch for batch, (_, compact) in batches.items() if compact]
    start = max(compacts) if compacts else 0
    files: list[CommittedFile] = []
    for batch in sorted(b for b in batches if b >= start):
        uri, _ = batches[batch]
        for entry in _file_entries(_log_entries(storage, uri)):
            files.append(CommittedFile(_normalise(entry["path"], sink_uri), int(entry["size"]), batch))
    return sorted(files, key=lambda f: f.uri)


def read_batch_log(storage: Storage, directory: str, batch: int) -> tuple[list[dict], bool] | None:
    """Entries of batch `batch`'s log file (`<n>` or `<n>.compact`) and whether it is a compact, by key."""
    for compact in (False, True):
        uri = join(directory, f"{batch}.compact" if compact else str(batch))
        if storage.stat(uri) is not None:
            return _log_entries(storage, uri), compact
    return None


def files_as_of(storage: Storage, sink_uri: str, batch: int) -> dict[str, int]:
    """Logged path -> size of every file the sink had committed after `batch`: the newest compact
    at or below it plus the deltas that follow (O(history): the slow path, never the usual one)."""
    directory = join(sink_uri, METADATA_DIR)
    files: dict[str, int] = {}
    start = 0
    for candidate in range(batch, -1, -1):
        if storage.stat(join(directory, f"{candidate}.compact")) is not None:
            start = candidate
            break
    for n in range(start, batch + 1):
        found = read_batch_log(storage, directory, n)
        if found is None:
            raise FileNotFoundError(f"no sink log for batch {n} under {directory}")
        for entry in _file_entries(found[0]):
            files[entry["path"]] = int(entry["size"])
    return files


class BatchFiles:
    """The files each batch committed to a sink, from its log: a delta file lists them; a compact
    file (every `compactInterval` batches) lists every file so far, so the batch's own files are
    the difference from the files as of the batch before (remembered once computed, so a reader
    that goes through consecutive batches pays the full read once, as Spark does when it compacts).
    """

    def __init__(self, storage: Storage, sink_uri: str) -> None:
        self.storage, self.sink_uri = storage, sink_uri
        self._known: tuple[int, dict[str, int]] | None = None

    def files(self, batch: int) -> list[tuple[str, int]] | None:
        """(logged path, size) of the files batch `batch` committed; None if the sink never logged it."""
        found = read_batch_log(self.storage, join(self.sink_uri, METADATA_DIR), batch)
        if found is None:
            return None
        entries, compact = found
        added = [(e["path"], int(e["size"])) for e in _file_entries(entries)]
        known = self._known[1] if self._known and self._known[0] == batch - 1 else None
        if not compact:
            if known is not None:
                known.update(added)
                self._known = (batch, known)
            return added
        if known is None:
            known = files_as_of(self.storage, self.sink_uri, batch - 1) if batch > 0 else {}
        own = [(path, size) for path, size in added if path not in known]
        self._known = (batch, dict(added))
        return own


def logged_uri(path: str, sink_uri: str) -> str:
    """The storage URI of a path as the sink log spells it (a URL, percent-encoded)."""
    return _normalise(path, sink_uri)


def data_files(storage: Storage, sink_uri: str) -> list[str]:
    """Every Parquet data file under the sink, committed or not (what a plain glob sees)."""
    return [
        info.uri
        for info in storage.list(sink_uri)
        if info.uri.endswith(".parquet")
        and f"/{METADATA_DIR}/" not in info.uri
        and "/_" not in info.uri[len(sink_uri) :]
    ]


@dataclass(frozen=True)
class CheckpointState:
    """What a query checkpoint says about progress: planned batches and committed batches."""

    offsets: list[int]
    commits: list[int]
    source_batches: list[int]

    @property
    def last_planned(self) -> int | None:
        return self.offsets[-1] if self.offsets else None

    @property
    def last_committed(self) -> int | None:
        return self.commits[-1] if self.commits else None

    @property
    def has_uncommitted_batch(self) -> bool:
        return self.last_planned is not None and self.last_planned != self.last_committed


def read_checkpoint(storage: Storage, query_checkpoint_uri: str) -> CheckpointState:
    return CheckpointState(
        offsets=committed_batches(storage, join(query_checkpoint_uri, "offsets")),
        commits=committed_batches(storage, join(query_checkpoint_uri, "commits")),
        source_batches=committed_batches(storage, join(query_checkpoint_uri, "sources", "0")),
    )


def batch_source_files(storage: Storage, query_checkpoint_uri: str, batch: int) -> list[str]:
    """The input files the query's file source took into one batch, as logged (URL-encoded).

    Reads the batch's own log file, or, once it is compacted away, the first compact file after it.
    """
    batches = _batch_files(storage, join(query_checkpoint_uri, "sources", "0"))
    holders = [b for b in batches if b >= batch and (b == batch or batches[b][1])]
    if not holders:
        return []
    entries = _log_entries(storage, batches[min(holders)][0])
    return [entry["path"] for entry in entries if int(entry.get("batchId", batch)) == batch]


def source_files(storage: Storage, query_checkpoint_uri: str) -> list[str]:
    """Every input file the query's file source has taken into a batch (its source log)."""
    directory = join(query_checkpoint_uri, "sources", "0")
    batches = _batch_files(storage, directory)
    compacts = [batch for batch, (_, compact) in batches.items() if compact]
    start = max(compacts) if compacts else 0
    seen: list[str] = []
    for batch in sorted(b for b in batches if b >= start):
        seen.extend(entry["path"] for entry in _log_entries(storage, batches[batch][0]))
    return seen
