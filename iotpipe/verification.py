"""VerifyGold: check the run's batches against the sinks, tidy what a crashed attempt left, count.

The run's window is the query's batches committed since the run took the lease
(`committed_before`, exclusive) up to the checkpoint's last commit. For each batch the job's
ledger (`iotpipe.ledger`) lists the files it committed; every one must exist with its logged
size, and its rows are counted from its Parquet footer. Work grows with the run, not with the
lake's history: ledger entries and checkpoint files are read by key, the checkpoint's
`offsets/`/`commits/` listings are bounded by Spark's retention, and no sink is listed whole.

Slow path: a batch without a ledger entry (its driver was killed right after the commit) is read
from the sink log, a delta file directly; a compact file (every 10 batches, all files so far)
is diffed against the files before it, which costs a read of the history, once.

The window's committed files are listed for Athena (iotpipe.manifests, one manifest per
partition and batch) before the window is recorded as verified. Files under a sink that the log
never committed (a crashed attempt's) are moved aside, because Glue crawlers and plain globs
ignore `_spark_metadata` and would read them as data. Only a replayed
batch can leave such files, and its replay writes the same partitions, so only the partitions
of replayed batches are listed. A file is moved only when nothing can commit it any more: it
was written after the first replayed batch was planned and before the last one committed (a
later file may belong to a batch still being written), and the run proves, first, that it holds
the lease with no Spark driver that may still write (`may_move`: `LeaseStore.hold_quiet`). A
driver still alive after its step ended FAILED withholds every move: the orphans are noted
under `<runs>/orphans-withheld/`, and the next verification that proves the lease quiet moves
them.

The state carries totals (bounded whatever the data); the full detail (per partition, per
batch, every moved or missing path) is written to `<runs>/<run_id>/verification.json`.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from iotpipe.compaction import moving_locations, pending_journals
from iotpipe.ledger import read_entry
from iotpipe.manifests import write_manifests
from iotpipe.models import MAX_EXAMPLES, MAX_REASONS, RunPlan, SinkVerification, Verification
from iotpipe.sink_log import BatchFiles, logged_uri, query_checkpoint, read_checkpoint
from iotpipe.storage import Storage, join

FOOTER_TRAILER = 8
FOOTER_GUESS = 64 * 1024
QUERIES = {"gold": "iot_transformed", "quarantine": "quarantine"}


def parquet_row_count(storage: Storage, uri: str) -> int:
    """Rows in a Parquet file, read from its footer alone (one ranged read, two for a large footer)."""
    tail = storage.read_tail(uri, FOOTER_GUESS)
    if tail[-4:] != b"PAR1":
        raise ValueError(f"not a Parquet file: {uri}")
    footer_length = struct.unpack("<I", tail[-8:-4])[0]
    if footer_length + FOOTER_TRAILER > len(tail):
        tail = storage.read_tail(uri, footer_length + FOOTER_TRAILER)
    footer = tail[-(footer_length + FOOTER_TRAILER) :]
    return pq.read_metadata(pa.BufferReader(b"PAR1" + footer)).num_rows


def _partition_of(uri: str, sink_uri: str) -> str:
    relative = uri[len(sink_uri.rstrip("/")) + 1 :]
    return relative.rsplit("/", 1)[0] if "/" in relative else ""


@dataclass
class SinkDetail:
    """What VerifyGold found in one sink over the window: the document's part, unbounded."""

    batches: list[int] = field(default_factory=list)
    slow_path_batches: list[int] = field(default_factory=list)
    replayed_batches: list[int] = field(default_factory=list)
    entries: dict[int, dict] = field(default_factory=dict)
    rows_by_partition: Counter = field(default_factory=Counter)
    files_by_partition_and_batch: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    manifests_written: int = 0
    new_files: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    moves_withheld: str = ""
    withheld: list[str] = field(default_factory=list)
    moved_earlier_orphans: list[str] = field(default_factory=list)
    inferred_input: dict[int, int] = field(default_factory=dict)

    def summary(self) -> SinkVerification:
        return SinkVerification(
            batches=len(self.batches),
            first_batch=self.batches[0] if self.batches else None,
            last_batch=self.batches[-1] if self.batches else None,
            new_files=self.new_files,
            new_rows=sum(self.rows_by_partition.values()),
            partitions=len(self.rows_by_partition),
            manifests_written=self.manifests_written,
            missing_files=len(self.missing),
            size_mismatches=len(self.mismatched),
            moved_aside=len(self.moved) + len(self.moved_earlier_orphans),
            moves_withheld=self.moves_withheld,
            slow_path_batches=len(self.slow_path_batches),
            examples={kind: paths[:MAX_EXAMPLES] for kind, paths in self._problems() if paths},
        )

    def _problems(self) -> list[tuple[str, list[str]]]:
        return [("missing", self.missing), ("size_mismatch", self.mismatched), ("moved", self.moved)]

    def document(self) -> dict:
        return {
            "batches": self.batches,
            "slow_path_batches": self.slow_path_batches,
            "replayed_batches": self.replayed_batches,
            "rows_by_partition": dict(sorted(self.rows_by_partition.items())),
            "manifests_written": self.manifests_written,
            "missing_files": self.missing,
            "size_mismatches": self.mismatched,
            "moved_aside": self.moved,
            "moves_withheld": self.moves_withheld,
            "withheld": self.withheld,
            "moved_earlier_orphans": self.moved_earlier_orphans,
            "input_rows_from_the_other_query": self.inferred_input,
        }


def verify_sink(
    storage: Storage,
    sink_uri: str,
    checkpoint_uri: str,
    query: str,
    committed_before: int,
    aside_uri: str,
    may_move: Callable[[], bool] = lambda: False,
) -> SinkDetail:
    state = read_checkpoint(storage, query_checkpoint(checkpoint_uri))
    last = state.last_committed if state.last_committed is not None else -1
    detail = SinkDetail(batches=list(range(committed_before + 1, last + 1)))
    reader = BatchFiles(storage, sink_uri)
    committed: dict[str, int] = {}
    batch_of: dict[str, int] = {}
    for batch in detail.batches:
        entry = read_entry(storage, checkpoint_uri, query, batch)
        if entry is not None and "files" in entry:
            files = [(f["path"], int(f["size"])) for f in entry["files"]]
            detail.entries[batch] = entry
            if entry.get("replay"):
                detail.replayed_batches.append(batch)
        else:
            files = reader.files(batch) or []
            detail.slow_path_batches.append(batch)
            # No record of whether it replayed a crashed attempt: look at its partitions to be safe.
            detail.replayed_batches.append(batch)
        for path, size in files:
            uri = logged_uri(path, sink_uri)
            committed[uri], batch_of[uri] = size, batch
    for uri, size in sorted(committed.items()):
        found = storage.stat(uri)
        if found is None:
            detail.missing.append(uri)
            continue
        if found.size != size:
            detail.mismatched.append(uri)
            continue
        detail.new_files += 1
        partition = _partition_of(uri, sink_uri)
        detail.rows_by_partition[partition] += parquet_row_count(storage, uri)
        detail.files_by_partition_and_batch.setdefault((partition, batch_of[uri]), []).append(uri)
    if detail.replayed_batches:
        detail.moved = _move_uncommitted(
            storage, sink_uri, query_checkpoint(checkpoint_uri), detail, committed, aside_uri, may_move
        )
    return detail


def _move_uncommitted(
    storage: Storage,
    sink_uri: str,
    checkpoint_of_query: str,
    detail: SinkDetail,
    committed: dict,
    aside_uri: str,
    may_move: Callable[[], bool],
) -> list[str]:
    """Move aside data files in the replayed batches' partitions that no batch committed and that
    no batch can commit any more (see the module's docstring)."""
    planned = storage.stat(join(checkpoint_of_query, "offsets", str(min(detail.replayed_batches))))
    replayed = storage.stat(join(checkpoint_of_query, "commits", str(max(detail.replayed_batches))))
    if planned is None or replayed is None:
        detail.moves_withheld = "the checkpoint no longer dates the replayed batches (retention)"
        return []
    partitions: set[str] = set()
    for batch in detail.replayed_batches:
        entry = detail.entries.get(batch)
        paths = [f["path"] for f in entry["files"]] if entry else []
        partitions.update(_partition_of(logged_uri(p, sink_uri), sink_uri) for p in paths)
    orphans = []
    for partition in sorted(partitions):
        directory = join(sink_uri, partition) if partition else sink_uri
        for info in storage.list(directory):
            name = info.uri[len(directory.rstrip("/")) + 1 :]
            if "/" in name or name.startswith(("_", ".")) or not name.endswith(".parquet"):
                continue
            if info.uri not in committed and planned.modified < info.modified <= replayed.modified:
                orphans.append(info.uri)
    if orphans:  # a compaction's merged files (a drain round's window began before it) are no orphans
        merged = {m.target for journal in pending_journals(storage, sink_uri) for m in journal.merges}
        orphans = [uri for uri in orphans if uri not in merged]
    if not orphans:
        return []
    if not may_move():
        detail.moves_withheld = "a Spark driver may still be writing, or the lease is not held: nothing moved"
        detail.withheld = orphans
        return []
    return _move_aside(storage, sink_uri, aside_uri, orphans)


def _move_aside(storage: Storage, sink_uri: str, aside_uri: str, uris: list[str]) -> list[str]:
    moved = []
    for uri in uris:
        target = join(aside_uri, uri[len(sink_uri.rstrip("/")) + 1 :])
        storage.move(uri, target)
        moved.append(target)
    return moved


WITHHELD_DIR = "orphans-withheld"


def note_withheld(storage: Storage, runs_uri: str, run_id: str, query: str, sink_uri: str, aside_uri: str,
                  uris: list[str]) -> None:  # fmt: skip
    note = {"sink": sink_uri, "aside": aside_uri, "files": uris}
    storage.write_bytes(join(runs_uri, WITHHELD_DIR, f"{run_id}-{query}.json"), json.dumps(note).encode())


def move_withheld(storage: Storage, runs_uri: str, may_move: Callable[[], bool]) -> list[str]:
    """Move the orphans earlier runs had to leave, once the lease is proven quiet (the listing
    holds only notes of runs that found a live driver: almost always empty)."""
    notes = [info.uri for info in storage.list(join(runs_uri, WITHHELD_DIR) + "/") if info.uri.endswith(".json")]
    if not notes or not may_move():
        return []
    moved = []
    for uri in notes:
        note = json.loads(storage.read_bytes(uri))
        present = [f for f in note["files"] if storage.stat(f) is not None]
        moved += _move_aside(storage, note["sink"], note["aside"], present)
        storage.delete(uri)
    return moved


def _reasons(detail: SinkDetail) -> dict[str, int]:
    """Quarantined rows per reason (the `reason=` partition), at most MAX_REASONS keys."""
    by_reason: Counter = Counter()
    for partition, rows in detail.rows_by_partition.items():
        by_reason[partition.split("=", 1)[1] if "=" in partition else partition] += rows
    top = dict(by_reason.most_common(MAX_REASONS - 1))
    rest = sum(by_reason.values()) - sum(top.values())
    return dict(sorted({**top, **({"other": rest} if rest else {})}.items()))


def infer_quarantine_input(storage: Storage, checkpoint_uri: str, quarantine: SinkDetail) -> None:
    """A quarantine batch without a ledger entry (its driver stopped right after the commit) is
    the same batch of the same query as the gold batch with its id: that entry gives its input
    rows. Gold's own missing entries stay missing (its valid rows are not derivable)."""
    for batch in quarantine.slow_path_batches:
        entry = read_entry(storage, checkpoint_uri, "gold", batch)
        if entry is not None:
            quarantine.inferred_input[batch] = int(entry.get("input_rows", 0))


def _ledger_totals(gold: SinkDetail, quarantine: SinkDetail) -> dict:
    input_rows = sum(int(e.get("input_rows", 0)) for e in gold.entries.values())
    quarantine_input = sum(int(e.get("input_rows", 0)) for e in quarantine.entries.values())
    quarantine_input += sum(quarantine.inferred_input.values())
    unknown = [b for b in quarantine.slow_path_batches if b not in quarantine.inferred_input]
    valid_rows = sum(int((e.get("observed") or {}).get("valid", {}).get("rows", 0)) for e in gold.entries.values())
    gold_rows = sum(gold.rows_by_partition.values())
    return {
        "batches": len(gold.batches),
        "complete": not gold.slow_path_batches and not unknown,
        "missing_entries": len(gold.slow_path_batches) + len(quarantine.slow_path_batches),
        "input_rows": input_rows,
        "quarantine_input_rows": quarantine_input,
        "valid_rows": valid_rows,
        "duplicates": valid_rows - gold_rows,
        "batch_ms": sum(int(e.get("ms") or 0) for e in gold.entries.values()),
    }


def reconcile(ledger: dict, gold_rows: int, quarantined_rows: int, carried: dict | None = None) -> dict:
    """Every input record is in Gold, in the quarantine or a duplicate, and both sinks' entries
    name the same input: over the run's window, plus what earlier windows left open.

    One query writes both sinks before it commits a batch, so their inputs agree batch by batch.
    A difference a window still leaves open is carried (`runs/reconciliation-carry.json`) to the
    run that closes it; a run reconciles when nothing is left open at its end."""
    carried = carried or {}
    accounted = gold_rows + quarantined_rows + ledger["duplicates"]
    difference = ledger["input_rows"] - accounted
    queries_differ = ledger["input_rows"] - ledger["quarantine_input_rows"]
    open_difference = difference + int(carried.get("difference", 0))
    open_queries_differ = queries_differ + int(carried.get("quarantine_input_difference", 0))
    return {
        "reconciles": ledger["complete"] and open_difference == 0 and open_queries_differ == 0,
        "input": ledger["input_rows"],
        "accounted": accounted,
        "difference": difference,
        "quarantine_input_difference": queries_differ,
        "carried_in": {k: int(carried.get(k, 0)) for k in ("difference", "quarantine_input_difference")},
        "left_open": {"difference": open_difference, "quarantine_input_difference": open_queries_differ},
        "ledger_complete": ledger["complete"],
    }


CARRY = "reconciliation-carry.json"
VERIFIED_THROUGH = "verified-through.json"


def verified_through(storage: Storage, runs_uri: str) -> dict[str, int] | None:
    """The last batch per query a verification covered: where the next run's window starts, so
    batches whose verification failed (VerifyGold crashed) are reported by the next run."""
    uri = join(runs_uri, VERIFIED_THROUGH)
    return json.loads(storage.read_bytes(uri)) if storage.stat(uri) is not None else None


def carried_in(storage: Storage, runs_uri: str, run_id: str, window: dict | None = None) -> dict:
    """What earlier windows left open. Runs verify one at a time (under the lease); a verification
    of a window already carried (a retry of the same run, or the next run's after one that died
    before recording its window as verified: the window starts where it did) reads what was open
    before it, not that verification's result."""
    uri = join(runs_uri, CARRY)
    if storage.stat(uri) is None:
        return {}
    carry = json.loads(storage.read_bytes(uri))
    again = carry.get("run_id") == run_id or (window is not None and carry.get("window") == window)
    return carry["before"] if again else carry["left_open"]


def carry_forward(
    storage: Storage, runs_uri: str, run_id: str, before: dict, reconciliation: dict, window: dict | None = None
) -> None:
    document = {"run_id": run_id, "window": window, "before": before, "left_open": reconciliation["left_open"]}
    storage.write_bytes(join(runs_uri, CARRY), json.dumps(document).encode())


def verification_document_uri(plan: RunPlan) -> str:
    return join(plan.lake.runs, plan.run_id, "verification.json")


def verify_gold(
    plan: RunPlan, committed_before: dict[str, int], storage: Storage, may_move: Callable[[], bool] = lambda: False
) -> Verification:
    """Verify the run's window; `may_move` proves, once, that orphan files may be moved aside."""
    proven: list[bool] = []

    def move_once_proven() -> bool:
        if not proven:
            proven.append(bool(may_move()))
        return proven[0]

    aside = join(plan.lake.uncommitted, plan.run_id)
    sinks = {"gold": plan.lake.gold, "quarantine": plan.lake.quarantine}
    details = {
        query: verify_sink(
            storage,
            sink,
            plan.lake.checkpoint,
            query,
            committed_before.get(query, -1),
            join(aside, QUERIES[query]),
            move_once_proven,
        )
        for query, sink in sinks.items()
    }
    for query, detail in details.items():
        if detail.withheld:
            note_withheld(storage, plan.lake.runs, plan.run_id, query, sinks[query], join(aside, QUERIES[query]),
                          detail.withheld)  # fmt: skip
    earlier = (
        [] if any(d.withheld for d in details.values()) else move_withheld(storage, plan.lake.runs, move_once_proven)
    )
    gold, quarantine = details["gold"], details["quarantine"]
    gold.moved_earlier_orphans = earlier
    infer_quarantine_input(storage, plan.lake.checkpoint, quarantine)
    # Athena's view, before the window counts as verified: a crash here repeats the window.
    for query, detail in details.items():
        # Gold's partitions a compaction is moving (the quarantine is not compacted).
        moving = moving_locations(storage, sinks[query]) if query == "gold" else {}
        detail.manifests_written = write_manifests(storage, sinks[query], detail.files_by_partition_and_batch, moving)
    ledger = _ledger_totals(gold, quarantine)
    window = {query: committed_before.get(query, -1) for query in details}
    before = carried_in(storage, plan.lake.runs, plan.run_id, window)
    gold_rows, quarantined_rows = sum(gold.rows_by_partition.values()), sum(quarantine.rows_by_partition.values())
    reconciliation = reconcile(ledger, gold_rows, quarantined_rows, before)
    ok = not (gold.missing or gold.mismatched or quarantine.missing or quarantine.mismatched)
    document = verification_document_uri(plan)
    verification = Verification(
        ok=ok,
        gold=gold.summary(),
        quarantine=quarantine.summary(),
        quarantined_by_reason=_reasons(quarantine),
        ledger=ledger,
        reconciliation=reconciliation,
        document=document,
    )
    storage.write_bytes(
        document,
        json.dumps(
            {"summary": verification.model_dump(mode="json"), **{q: d.document() for q, d in details.items()}},
            indent=1,
            sort_keys=True,
        ).encode(),
    )
    # Last: once the window counts as verified, no later run covers it, so its document (which
    # ReportStatus registers the partitions from) and its carry must exist already.
    carry_forward(storage, plan.lake.runs, plan.run_id, before, reconciliation, window)
    through = {query: detail.batches[-1] if detail.batches else window[query] for query, detail in details.items()}
    storage.write_bytes(join(plan.lake.runs, VERIFIED_THROUGH), json.dumps(through).encode())
    return verification
