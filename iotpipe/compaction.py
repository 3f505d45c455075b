"""Gold compaction: a partition's small files become one, for every reader at the same moment.

A batch writes at most one file per Gold partition, so a partition gets a small file from every
batch with rows for it (late rows reach old dates for days). Compaction rewrites the small files
of a partition into one, after the run that committed them, under the run's lease, while no
driver runs. Each reader sees the old files or the merged one, never both and never neither:

- **Spark and DuckDB** read the files the sink log lists. The job writes a compact log file every
  batch (`compactInterval` 1, spark/job.py), which lists every file so far, and readers read only
  the newest one. Compaction rewrites that one file, in one PUT, with the merged files in place of
  the files they replace (`swap_in`).
- **Athena** reads a partition's manifests, in the folder the catalog names. Compaction writes a
  new folder listing the partition's files after the swap, then moves the catalog's partition to
  it (one UpdatePartition), then records the folder for VerifyGold, which writes later batches'
  manifests there (`publish`, `manifest_folder_now`).
- The replaced files, and the folders no partition names any more, are deleted a grace period
  later (`clean_up`): a reader that took the old list may still be reading them.

Every step is recorded first in a journal, `<sink>/_compaction/journal/<batch>.json`, so a
compaction cut short at any point is finished or undone by the next (`resume`). Spark's sink log
can only add files, so the swap writes Spark's log format itself: its version line, then the
entries it keeps, byte for byte, then one per merged file, spelled as the replaced ones are.

Python 3.9 syntax: the compaction's Spark job ships this module to EMR.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import quote

from iotpipe.manifests import COMPACTION_FOLDER, MANIFEST_FOLDER, Location, manifest_folder_now, write_location
from iotpipe.sink_log import METADATA_DIR, _batch_files, logged_uri
from iotpipe.storage import Storage, join

# A file below this is small: several of them in a partition are merged into one.
SMALL_FILE_BYTES = 32 * 1024 * 1024
# A merge takes small files until their sizes add up to this.
MERGED_FILE_BYTES = 256 * 1024 * 1024
# A merge waits until the files it adds make up 1/GROWTH of the largest it rewrites.
GROWTH = 4
# At most this many partitions per compaction (its catalog side moves them in one Lambda call);
# a lake's first compaction leaves the rest to the next runs.
MAX_PARTITIONS = 2000
# A Spark job, a DuckDB query or an Athena query that listed the files before the swap reads them
# for at most this long; the replaced files are deleted after it.
GRACE_SECONDS = 6 * 3600


class CompactionRefused(RuntimeError):
    """The sink is not in a state a compaction may change: said why, and nothing was changed."""


class UnreadableJournal(RuntimeError):
    """A compaction journal that does not parse: which one, and what stops until it is repaired."""


@dataclass
class Merge:
    """One partition's small files (their sink-log entries) and the file that replaces them."""

    partition: str
    replaced: List[dict]
    target: str
    merged: Optional[dict] = None

    def to_json(self) -> dict:
        return {"partition": self.partition, "replaced": self.replaced, "target": self.target, "merged": self.merged}

    @classmethod
    def from_json(cls, document: dict) -> Merge:
        return cls(document["partition"], document["replaced"], document["target"], document.get("merged"))


@dataclass
class Journal:
    """A compaction of the sink-log file of batch `batch`, step by step."""

    batch: int
    merges: List[Merge]
    written: bool = False
    swapped: bool = False
    # Each merged partition's files (real keys) as the sink log lists them after `files_as_of`'s
    # batch: what its Athena manifest lists. Kept by the Spark side, which reads the log anyway,
    # so the catalog side never reads a compact log file (it holds the whole history).
    files_after: Dict[str, List[str]] = field(default_factory=dict)
    files_as_of: Optional[int] = None
    # Set when publication begins: `files_after` is frozen at this batch from then on.
    pointed_as_of: Optional[int] = None
    published_at: Optional[float] = None
    previous_folders: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        document = dict(self.__dict__)
        document["merges"] = [m.to_json() for m in self.merges]
        return document

    @classmethod
    def from_json(cls, document: dict) -> Journal:
        fields = dict(document)
        fields["merges"] = [Merge.from_json(m) for m in document["merges"]]
        return cls(**fields)


def journal_folder(sink_uri: str) -> str:
    return join(sink_uri, COMPACTION_FOLDER, "journal")


def journal_uri(sink_uri: str, batch: int) -> str:
    return join(journal_folder(sink_uri), f"{batch}.json")


def save(storage: Storage, sink_uri: str, journal: Journal) -> None:
    storage.write_bytes(journal_uri(sink_uri, journal.batch), json.dumps(journal.to_json(), sort_keys=True).encode())


def pending_journals(storage: Storage, sink_uri: str) -> List[Journal]:
    """Journals not finished yet, oldest first (each is deleted once its grace period is over)."""
    found = [info.uri for info in storage.list(journal_folder(sink_uri) + "/") if info.uri.endswith(".json")]
    return sorted((read_journal(storage, uri) for uri in found), key=lambda j: j.batch)


def read_journal(storage: Storage, uri: str) -> Journal:
    try:
        journal = Journal.from_json(json.loads(storage.read_bytes(uri)))
        _check_fields(journal)
        return journal
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UnreadableJournal(
            f"compaction journal {uri} cannot be read ({type(error).__name__}: {error}). Spark and DuckDB "
            "readers are unaffected, but VerifyGold fails (Athena sees no new batch) and Gold compaction "
            "stops until it is restored to the last version iotpipe wrote (the deployed Gold bucket "
            "keeps earlier versions; an older one would list files twice for Athena)."
        ) from error


def _check_fields(journal: Journal) -> None:
    def optional_number(value) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

    def well_formed(merge: Merge) -> bool:
        return (
            isinstance(merge.partition, str)
            and isinstance(merge.target, str)
            and isinstance(merge.replaced, list)
            and all(isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in merge.replaced)
            and (merge.merged is None or isinstance(merge.merged, dict))
        )

    checks = {
        "batch": isinstance(journal.batch, int) and not isinstance(journal.batch, bool),
        "merges": all(well_formed(merge) for merge in journal.merges),  # a list: from_json builds it
        "written": isinstance(journal.written, bool),
        "swapped": isinstance(journal.swapped, bool),
        "files_after": isinstance(journal.files_after, dict)
        and all(isinstance(files, list) for files in journal.files_after.values()),
        "files_as_of": optional_number(journal.files_as_of),
        "pointed_as_of": optional_number(journal.pointed_as_of),
        "published_at": optional_number(journal.published_at),
        "previous_folders": isinstance(journal.previous_folders, dict),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    if wrong:
        raise TypeError(f"fields of the wrong type: {', '.join(wrong)}")


def _inside(sink_uri: str, uri: str) -> str:
    """`uri`, if it lies under the sink: a journal never deletes outside it (a lake copied with its
    journals lists the original lake's absolute paths)."""
    if not uri.startswith(sink_uri.rstrip("/") + "/"):
        raise CompactionRefused(f"a compaction journal names {uri}, outside its sink {sink_uri}: nothing deleted")
    return uri


def compacted_folder(sink_uri: str, batch: int, partition: str) -> str:
    return join(sink_uri, MANIFEST_FOLDER, f"compacted-{batch}", partition)


def _log_files(storage: Storage, sink_uri: str) -> Dict[int, Tuple[str, bool]]:
    """Batch -> (uri, is_compact) of the sink log's files. Listed with the folder's trailing slash:
    the prefix PublishCompaction's role may list."""
    return _batch_files(storage, join(sink_uri, METADATA_DIR) + "/")


def newest_log(storage: Storage, sink_uri: str) -> Optional[Tuple[int, str, bool]]:
    """(batch, uri, is_compact) of the newest sink-log file, or None for a sink with no batch."""
    batches = _log_files(storage, sink_uri)
    if not batches:
        return None
    batch = max(batches)
    uri, compact = batches[batch]
    return batch, uri, compact


def read_log(storage: Storage, uri: str) -> Tuple[str, List[str]]:
    """The version line and the entry lines of a sink-log file, as written."""
    lines = storage.read_bytes(uri).decode("utf-8").split("\n")
    if not lines or not lines[0].startswith("v"):
        raise CompactionRefused(f"not a Spark sink-log file (no version line): {uri}")
    return lines[0], [line for line in lines[1:] if line.strip()]


def partition_of(entry: dict, sink_uri: str) -> str:
    """The directory, relative to the sink, of a logged file (as the storage names it)."""
    relative = logged_uri(entry["path"], sink_uri)[len(sink_uri.rstrip("/")) + 1 :]
    return relative.rsplit("/", 1)[0] if "/" in relative else ""


def merged_name(batch: int) -> str:
    """A new merged file's name (the journal keeps it: a retry writes the same file)."""
    return f"part-compacted-{batch}-{uuid.uuid4().hex}.c000.snappy.parquet"


def worth_merging(sizes: List[int]) -> bool:
    """Whether files are worth merging: the others add up to 1/GROWTH of the largest at least.
    Each merge then grows what it rewrites by that share, so a row is rewritten a number of times
    that grows with the log of the partition's runs, not with the runs (tests/unit/test_compaction_plan.py)."""
    if len(sizes) < 2:
        return False
    largest = max(sizes)
    return (sum(sizes) - largest) * GROWTH >= largest


def files_to_merge(files: List[dict]) -> List[dict]:
    """The most of a partition's small files, smallest first and up to MERGED_FILE_BYTES, worth
    merging (none if no two are). A large file waits until enough smaller ones gathered; the small
    ones merge among themselves meanwhile, so a partition keeps a few files of growing sizes."""
    ordered = sorted(files, key=lambda e: (int(e["size"]), e["path"]))
    chosen: List[dict] = []
    total = 0
    for count, entry in enumerate(ordered, start=1):
        total += int(entry["size"])
        if total > MERGED_FILE_BYTES and count > 1:
            break
        if worth_merging([int(e["size"]) for e in ordered[:count]]):
            chosen = ordered[:count]
    return chosen


def plan(entries: List[dict], sink_uri: str, batch: int) -> List[Merge]:
    """The merges worth doing among each partition's small files (`files_to_merge`). Files of no
    partition (none in Gold) are left alone."""
    small: Dict[str, List[dict]] = {}
    for entry in entries:
        if entry.get("isDir") or int(entry["size"]) >= SMALL_FILE_BYTES:
            continue
        partition = partition_of(entry, sink_uri)
        if partition:
            small.setdefault(partition, []).append(entry)
    merges = []
    for partition, files in sorted(small.items()):
        chosen = files_to_merge(files)
        if chosen and len(merges) < MAX_PARTITIONS:
            target = join(sink_uri, partition, merged_name(batch))
            merges.append(Merge(partition, sorted(chosen, key=lambda e: e["path"]), target))
    return merges


def merged_entry(storage: Storage, merge: Merge) -> dict:
    """The sink-log entry of the merged file, spelled as Spark spells the files beside it (the
    replaced file's URL with its name changed: the name has no character to encode)."""
    info = storage.stat(merge.target)
    if info is None:
        raise CompactionRefused(f"the merged file {merge.target} is missing")
    template = merge.replaced[0]
    directory = template["path"].rsplit("/", 1)[0]
    return {
        "path": f"{directory}/{quote(merge.target.rsplit('/', 1)[1])}",
        "size": info.size,
        "isDir": False,
        "modificationTime": int(info.modified * 1000),
        "blockReplication": template.get("blockReplication", 1),
        "blockSize": template.get("blockSize", 33554432),
        "action": "add",
    }


def swapped_lines(lines: List[str], merges: List[Merge]) -> Tuple[List[str], bool]:
    """The log's entry lines with each merge's files replaced by its merged file, and whether they
    already were (the merged files listed, the replaced ones not)."""
    replaced = {entry["path"] for m in merges for entry in m.replaced}
    merged = {m.merged["path"] for m in merges if m.merged}
    listed = {json.loads(line)["path"] for line in lines}
    if merged <= listed and not (replaced & listed):
        return lines, True
    if merged & listed or not replaced <= listed:
        raise CompactionRefused("the sink log lists part of a compaction: " + json.dumps(sorted(merged & listed)[:3]))
    kept = [line for line in lines if json.loads(line)["path"] not in replaced]
    added = [json.dumps(m.merged, separators=(",", ":")) for m in merges if m.merged]
    return kept + added, False


def swap_in(storage: Storage, log_uri: str, merges: List[Merge]) -> bool:
    """Rewrite the newest compact log file with the merged files in place of the replaced ones,
    in one write. False if it already was."""
    version, lines = read_log(storage, log_uri)
    new_lines, done = swapped_lines(lines, merges)
    if done:
        return False
    # A local file system keeps a checksum beside the file, which would no longer match; S3 has none.
    checksum = log_uri.rsplit("/", 1)
    storage.delete(f"{checksum[0]}/.{checksum[1]}.crc")
    storage.write_bytes(log_uri, ("\n".join([version, *new_lines])).encode("utf-8"))
    return True


def partition_files(lines: List[str], sink_uri: str, partitions: List[str]) -> Dict[str, List[str]]:
    """Each partition's files in a compact sink-log file's lines (all files so far), by real key."""
    files: Dict[str, List[str]] = {p: [] for p in partitions}
    for line in lines:
        entry = json.loads(line)
        partition = partition_of(entry, sink_uri)
        if partition in files and not entry.get("isDir"):
            files[partition].append(logged_uri(entry["path"], sink_uri))
    return {p: sorted(uris) for p, uris in files.items()}


# Moves catalog partitions (relative dir -> manifest folder), each at once for Athena.
Relocate = Callable[[Dict[str, str]], None]


def publish(storage: Storage, sink_uri: str, journal: Journal, relocate: Relocate, now: float) -> None:
    """Athena's side of a swapped compaction, each step safe to redo:

    1. for each partition a new folder whose manifest lists its files as of `files_as_of`, the
       newest batch when publication began (frozen from then on: later batches get manifests of
       their own);
       from the journal's save on, VerifyGold writes a later batch's manifest to the new folder and
       the old one (`moving_locations`), so Athena sees it whichever folder the catalog names;
    2. the catalog moved (one BatchUpdatePartition per 100 partitions);
    3. pointers naming the new folder, then the journal marked published."""
    partitions = [m.partition for m in journal.merges]
    if journal.pointed_as_of is None:
        for partition in partitions:
            journal.previous_folders[partition] = manifest_folder_now(storage, sink_uri, partition)
        journal.pointed_as_of = journal.files_as_of
        save(storage, sink_uri, journal)  # the old folders and the frozen lists, before anything moves
    folders = {p: compacted_folder(sink_uri, journal.batch, p) for p in partitions}
    for partition in partitions:
        listed = "".join(f"{uri}\n" for uri in sorted(journal.files_after[partition]))
        storage.write_bytes(join(folders[partition], f"compacted-{journal.batch}"), listed.encode())
    relocate({p: folders[p] + "/" for p in partitions})
    for partition in partitions:
        write_location(storage, sink_uri, partition, Location(folders[partition], int(journal.pointed_as_of)))
    journal.published_at = now
    save(storage, sink_uri, journal)


def moving_locations(storage: Storage, sink_uri: str) -> Dict[str, Location]:
    """Where VerifyGold writes the manifests of partitions whose compaction is being published:
    the new folder (batches after the frozen list) and the old one, until the journal is marked
    published (the pointers name the new folder from then on)."""
    moving: Dict[str, Location] = {}
    for journal in pending_journals(storage, sink_uri):
        if journal.pointed_as_of is None or journal.published_at is not None:
            continue
        for merge in journal.merges:
            folder = compacted_folder(sink_uri, journal.batch, merge.partition)
            previous = journal.previous_folders[merge.partition]
            moving[merge.partition] = Location(folder, int(journal.pointed_as_of), previous)
    return moving


def _delete_folder(storage: Storage, folder: str) -> int:
    found = storage.list(folder.rstrip("/") + "/")
    for info in found:
        storage.delete(info.uri)
    return len(found)


def clean_up(storage: Storage, sink_uri: str, journal: Journal) -> int:
    """Delete what a published compaction replaced: its small files, and the manifest folders its
    partitions no longer use. Then the journal. The count of objects deleted."""
    replaced = [_inside(sink_uri, logged_uri(e["path"], sink_uri)) for m in journal.merges for e in m.replaced]
    previous = {m.partition: _inside(sink_uri, journal.previous_folders[m.partition])
                for m in journal.merges if journal.previous_folders.get(m.partition)}  # fmt: skip
    for uri in replaced:
        storage.delete(uri)
    deleted = len(replaced)
    for partition, folder in previous.items():
        if folder != manifest_folder_now(storage, sink_uri, partition):
            deleted += _delete_folder(storage, folder)
    storage.delete(journal_uri(sink_uri, journal.batch))
    return deleted


def undo(storage: Storage, sink_uri: str, journal: Journal) -> int:
    """A compaction whose swap never happened (and can no longer: later batches were logged): its
    merged files are in no log and no manifest; delete them and the journal."""
    for target in [_inside(sink_uri, merge.target) for merge in journal.merges]:
        storage.delete(target)
    storage.delete(journal_uri(sink_uri, journal.batch))
    return len(journal.merges)


@dataclass
class Outcome:
    """What one compaction did, for its report."""

    batch: Optional[int] = None
    partitions: int = 0
    files_replaced: int = 0
    bytes_merged: int = 0
    resumed: List[int] = field(default_factory=list)
    undone: List[int] = field(default_factory=list)
    waiting: List[int] = field(default_factory=list)
    cleaned: List[int] = field(default_factory=list)
    deleted: int = 0
    # Published compactions whose replaced files are kept until then (epoch seconds), by batch.
    deletions_due: Dict[int, float] = field(default_factory=dict)
    skipped: Optional[str] = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def logged_lines(storage: Storage, sink_uri: str) -> Tuple[Optional[int], List[str]]:
    """The newest batch and the entry lines of every file the sink log lists: the newest compact
    file's and the deltas' after it (a sink written with Spark's default interval has deltas)."""
    batches = _log_files(storage, sink_uri)
    if not batches:
        return None, []
    compacts = [b for b, (_, compact) in batches.items() if compact]
    start = max(compacts) if compacts else 0
    lines: List[str] = []
    for batch in sorted(b for b in batches if b >= start):
        lines += read_log(storage, batches[batch][0])[1]
    return max(batches), lines


def finish_or_undo(storage: Storage, sink_uri: str, outcome: Outcome) -> None:
    """The Spark side of journals an earlier compaction left unpublished: swap them in if the
    sink log is still theirs, or undo them (their merged files are in no log); and, until their
    publication begins, bring the files their catalog side will list up to the newest batch."""
    newest, lines = logged_lines(storage, sink_uri)
    for journal in pending_journals(storage, sink_uri):
        if journal.published_at is not None or journal.pointed_as_of is not None:
            continue
        listed = {json.loads(line)["path"] for line in lines}
        merged = {m.merged["path"] for m in journal.merges if m.merged}
        if not journal.swapped and not (merged and merged <= listed):
            if newest != journal.batch or not journal.written:
                outcome.deleted += undo(storage, sink_uri, journal)
                outcome.undone.append(journal.batch)
                continue
            swap_in(storage, newest_log(storage, sink_uri)[1], journal.merges)
            newest, lines = logged_lines(storage, sink_uri)
        if not journal.swapped:
            outcome.resumed.append(journal.batch)
        journal.swapped = True
        journal.files_after = partition_files(lines, sink_uri, [m.partition for m in journal.merges])
        journal.files_as_of = newest
        save(storage, sink_uri, journal)


def publish_pending(
    storage: Storage, sink_uri: str, relocate: Relocate, now: Optional[float] = None, grace: float = GRACE_SECONDS
) -> Outcome:
    """The catalog's side, after the Spark side: publish every swapped journal, and delete what a
    published one replaced once its grace period is over. A journal not swapped yet is left to
    the Spark side (it is swapped or undone by the next compaction), as is one whose files are
    older than the newest batch (its partitions' later files are in no list it holds)."""
    now = time.time() if now is None else now
    outcome = Outcome()
    newest = newest_log(storage, sink_uri)  # a listing of the log's few files, not a read
    for journal in pending_journals(storage, sink_uri):
        if journal.published_at is None:
            up_to_date = newest is not None and journal.files_as_of == newest[0]
            if not journal.swapped or not (up_to_date or journal.pointed_as_of is not None):
                outcome.waiting.append(journal.batch)  # the next compaction step brings it up to date
                continue
            publish(storage, sink_uri, journal, relocate, now)
            outcome.resumed.append(journal.batch)
        if now - journal.published_at >= grace:
            outcome.deleted += clean_up(storage, sink_uri, journal)
            outcome.cleaned.append(journal.batch)
        else:
            outcome.deletions_due[journal.batch] = journal.published_at + grace
    return outcome


Merger = Callable[[List[Merge]], None]


def compact(storage: Storage, sink_uri: str, last_committed: Optional[int], merge_files: Merger) -> Outcome:
    """The Spark side: merge the sink's small files as of its newest batch and swap them into its
    log. The newest batch must be the query's last committed one, and no driver may run (the
    caller holds the lease). `merge_files` writes each merge's files into one file at its target.
    Athena sees the swap once `publish_pending` ran."""
    outcome = Outcome()
    finish_or_undo(storage, sink_uri, outcome)
    newest = newest_log(storage, sink_uri)
    if newest is None:
        outcome.skipped = "the sink holds no batch yet"
        return outcome
    batch, log_uri, is_compact = newest
    if batch != last_committed:
        raise CompactionRefused(
            f"the sink's newest batch is {batch} but the query's last committed batch is {last_committed}: "
            "a batch is still to be committed or replayed. Let the next run finish it, then compact"
        )
    if not is_compact:
        outcome.skipped = (
            f"batch {batch}'s sink-log file is not a compact file (a sink written with Spark's default "
            "compactInterval, 10): compaction waits for the next compact one"
        )
        return outcome
    if any(j.batch == batch for j in pending_journals(storage, sink_uri)):
        outcome.skipped = f"batch {batch} is already compacted"
        return outcome
    _, lines = read_log(storage, log_uri)
    merges = plan([json.loads(line) for line in lines], sink_uri, batch)
    outcome.batch = batch
    if not merges:
        outcome.skipped = "no partition's small files are worth merging yet"
        return outcome
    journal = Journal(batch, merges)
    save(storage, sink_uri, journal)  # first: a crash from here on is undone or finished by the next
    merge_files(merges)
    for merge in merges:
        merge.merged = merged_entry(storage, merge)
    journal.written = True
    save(storage, sink_uri, journal)
    swap_in(storage, log_uri, merges)
    journal.swapped = True
    journal.files_after = partition_files(read_log(storage, log_uri)[1], sink_uri, [m.partition for m in merges])
    journal.files_as_of = batch
    save(storage, sink_uri, journal)
    outcome.partitions = len(merges)
    outcome.files_replaced = sum(len(m.replaced) for m in merges)
    outcome.bytes_merged = sum(int(e["size"]) for m in merges for e in m.replaced)
    return outcome


def summary_uri(checkpoint_uri: str, run_id: str) -> str:
    """Where the compaction's Spark step writes what it did."""
    return join(checkpoint_uri, "compactions", f"{run_id}.json")


def spark_summary(storage: Storage, checkpoint_uri: str, run_id: str) -> Optional[dict]:
    uri = summary_uri(checkpoint_uri, run_id)
    return json.loads(storage.read_bytes(uri)) if storage.stat(uri) is not None else None
