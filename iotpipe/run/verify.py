"""VerifyGold: the run's batches as the tables committed them, every file present, every record
accounted for by independent counts.

A batch belongs to the run whose attempt made its last commit, the seen-id store's (tagged with
the run: spark/job.py), so every committed batch belongs to exactly one run, whatever crashed and
when; a batch a run left half done belongs to the run that finishes it. For each of the run's
batches, the three commits are looked up by their tags (query id, batch id) on each table's main
line of history (iotpipe.lake.iceberg), and:

- every data file each commit added exists with its size (one HEAD per file); Gold's and the
  quarantine's rows are the rows of the files found, as the commit recorded them (a lost file is
  rows missing from Gold, and the run does not reconcile);
- the batch's input rows and its duplicates are the counts the job recorded on the Gold commit,
  the duplicates counted where de-duplication dropped them, never derived from Gold;
- the seen-id store's commit added as many ids as the Gold commit, from that commit;
- no commit added ids to the seen-id store since the run's previous batch but the batches'
  own (an id planted there would make a new record pass for a duplicate).

A run reconciles when, batch by batch, input = Gold + quarantined + duplicates, both tables'
commits name the same input, and the store is consistent. What a Lambda reads grows with the run
(its commits and their files), not with the tables' history.

The state carries totals (bounded whatever the data); the detail (per batch, per partition, every
missing path) is written to `<runs>/<run_id>/verification.json`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from iotpipe.lake.checkpoint import query_id
from iotpipe.lake.iceberg import (
    BATCH_STARTED_MS,
    DUPLICATES,
    GOLD_SNAPSHOT,
    INPUT_ROWS,
    RUN_ID,
    DataFile,
    Snapshot,
    TableMetadata,
    TableNotFound,
    added_files,
    read_metadata,
)
from iotpipe.lake.storage import Storage, join
from iotpipe.lake.tables import DEFAULT_SNAPSHOT_AGE_MS, GOLD, QUARANTINE, SEEN_IDS
from iotpipe.run.models import MAX_EXAMPLES, MAX_REASONS, RunPlan, SinkVerification, Verification


@dataclass
class TableDetail:
    """What VerifyGold found in one table over the run's batches: the document's part, unbounded."""

    batches: list[int] = field(default_factory=list)
    committed_rows: int = 0
    rows_by_partition: Counter = field(default_factory=Counter)
    files: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.rows_by_partition.values())

    def add_files(self, storage: Storage, files: list[DataFile]) -> None:
        for file in files:
            self.committed_rows += file.records
            found = storage.stat(file.uri)
            if found is None:
                self.missing.append(file.uri)
            elif found.size != file.size:
                self.mismatched.append(file.uri)
            else:
                self.files += 1
                self.rows_by_partition[_partition_key(file.partition)] += file.records

    def summary(self) -> SinkVerification:
        return SinkVerification(
            batches=len(self.batches),
            first_batch=min(self.batches) if self.batches else None,
            last_batch=max(self.batches) if self.batches else None,
            new_files=self.files,
            new_rows=self.rows,
            committed_rows=self.committed_rows,
            partitions=len(self.rows_by_partition),
            missing_files=len(self.missing),
            size_mismatches=len(self.mismatched),
            examples={k: paths[:MAX_EXAMPLES] for k, paths in (("missing", self.missing),
                                                                 ("size_mismatch", self.mismatched)) if paths},
        )  # fmt: skip

    def document(self) -> dict:
        return {
            "batches": self.batches,
            "committed_rows": self.committed_rows,
            "rows_by_partition": dict(sorted(self.rows_by_partition.items())),
            "missing_files": self.missing,
            "size_mismatches": self.mismatched,
        }


def _partition_key(partition: dict) -> str:
    """`name=value/...`, each value with `%`, `/` and `=` percent-escaped, so that a value holding
    them (a city named `a/b=c`) reads back whole (iotpipe.run.history unquotes it)."""
    return "/".join(f"{name}={_escape(value)}" for name, value in partition.items())


def _escape(value: object) -> str:
    return str(value).replace("%", "%25").replace("/", "%2F").replace("=", "%3D")


def run_batches(seen: TableMetadata, run_id: str) -> dict[int, Snapshot]:
    """{batch: its seen-id commit} of the batches that belong to the run (their last commit is its)."""
    return {s.batch: s for s in seen.main_line() if s.summary.get(RUN_ID) == run_id and s.batch is not None}


def planted_ids(
    seen: TableMetadata, first_batch: int | None, query: str | None, last_batch: int | None = None
) -> list[Snapshot]:
    """Commits that added ids to the seen-id store between the batch before `first_batch` and
    `last_batch` (without it: until now), other than the batches' own appends and maintenance's
    rewrites (which keep every id). One made after the run's last batch could only touch later
    batches: it is the next run's to answer for, so each such commit is in one run's report."""
    if first_batch is None:
        return []
    planted, reached = [], last_batch is None
    for snapshot in seen.main_line():
        if snapshot.query_id == query and snapshot.batch is not None:
            if snapshot.batch < first_batch:
                break
            reached = reached or snapshot.batch <= last_batch
            continue
        if not reached:
            continue
        rewrite = snapshot.operation == "replace" and snapshot.added_records == snapshot.deleted_records
        if snapshot.added_records and not rewrite:
            planted.append(snapshot)
    return planted


@dataclass
class BatchCounts:
    batch: int
    input_rows: int
    quarantine_input_rows: int
    gold_rows: int
    quarantined_rows: int
    duplicates: int
    seen_ids: int
    gold_committed_rows: int
    store_consistent: bool
    ms: int

    @property
    def difference(self) -> int:
        return self.input_rows - (self.gold_rows + self.quarantined_rows + self.duplicates)


def reconcile(batches: list[BatchCounts], planted: list[Snapshot], complete: bool) -> dict:
    """Every input record of every batch in Gold, in the quarantine or a duplicate (each count from
    its own evidence), both tables' commits naming the same input, the store holding Gold's ids."""
    difference = sum(b.difference for b in batches)
    queries_differ = sum(b.input_rows - b.quarantine_input_rows for b in batches)
    inconsistent = [b.batch for b in batches if not b.store_consistent]
    open_batches = [b.batch for b in batches if b.difference or b.input_rows != b.quarantine_input_rows]
    return {
        "reconciles": complete and not open_batches and not inconsistent and not planted,
        "input": sum(b.input_rows for b in batches),
        "accounted": sum(b.gold_rows + b.quarantined_rows + b.duplicates for b in batches),
        "difference": difference,
        "quarantine_input_difference": queries_differ,
        "batches_not_reconciled": open_batches[:MAX_EXAMPLES],
        "seen_ids_inconsistent": inconsistent[:MAX_EXAMPLES],
        "foreign_seen_id_commits": [s.snapshot_id for s in planted][:MAX_EXAMPLES],
        "commits_complete": complete,
    }


def verification_document_uri(plan: RunPlan) -> str:
    return join(plan.lake.runs, plan.run_id, "verification.json")


def _reasons(detail: TableDetail) -> dict[str, int]:
    """Quarantined rows per reason (the partition's `reason=`), at most MAX_REASONS keys."""
    by_reason: Counter = Counter()
    for partition, rows in detail.rows_by_partition.items():
        fields = dict(part.split("=", 1) for part in partition.split("/") if "=" in part)
        by_reason[fields.get("reason", "other")] += rows
    top = dict(by_reason.most_common(MAX_REASONS - 1))
    rest = sum(by_reason.values()) - sum(top.values())
    return dict(sorted({**top, **({"other": rest} if rest else {})}.items()))


def read_tables(storage: Storage, glue, database: str) -> dict[str, TableMetadata] | None:
    """The three tables' current metadata; None before the job first created them."""
    try:
        return {t.name: read_metadata(storage, glue, database, t.name) for t in (GOLD, QUARANTINE, SEEN_IDS)}
    except TableNotFound:
        return None


def verify_run(
    plan: RunPlan, run_id: str, storage: Storage, glue, database: str, tables: dict[str, TableMetadata] | None = None
) -> tuple[Verification, dict]:
    """Verify what run `run_id` committed (the plan names the lake), from the tables' metadata
    (`tables`, read here when not given); the verification and its document."""
    gold, quarantine = TableDetail(), TableDetail()
    counts: list[BatchCounts] = []
    planted: list[Snapshot] = []
    missing_commits: list[str] = []
    tables = tables if tables is not None else read_tables(storage, glue, database)
    query = query_id(storage, plan.lake.checkpoint)
    if tables is not None and query is not None:
        owned = run_batches(tables[SEEN_IDS.name], run_id)
        gold_commits = tables[GOLD.name].batches(query)
        quarantine_commits = tables[QUARANTINE.name].batches(query)
        for batch, seen in sorted(owned.items()):
            gold_commit, quarantine_commit = gold_commits.get(batch), quarantine_commits.get(batch)
            if gold_commit is None or quarantine_commit is None:
                missing_commits.append(
                    f"batch {batch}: "
                    + ", ".join(
                        name for name, c in (("gold", gold_commit), ("quarantine", quarantine_commit)) if c is None
                    )
                )
                continue  # fmt: skip
            gold.batches.append(batch)
            quarantine.batches.append(batch)
            rows_before = (gold.rows, quarantine.rows)
            gold.add_files(storage, added_files(storage, gold_commit))
            quarantine.add_files(storage, added_files(storage, quarantine_commit))
            counts.append(
                BatchCounts(
                    batch=batch,
                    input_rows=gold_commit.count(INPUT_ROWS),
                    quarantine_input_rows=quarantine_commit.count(INPUT_ROWS),
                    gold_rows=gold.rows - rows_before[0],
                    quarantined_rows=quarantine.rows - rows_before[1],
                    duplicates=gold_commit.count(DUPLICATES),
                    seen_ids=seen.added_records,
                    gold_committed_rows=gold_commit.added_records,
                    store_consistent=seen.added_records == gold_commit.added_records
                    and seen.summary.get(GOLD_SNAPSHOT) == str(gold_commit.snapshot_id),
                    ms=max(0, seen.timestamp_ms - gold_commit.count(BATCH_STARTED_MS)),
                )
            )
        planted = planted_ids(tables[SEEN_IDS.name], min(owned, default=None), query, max(owned, default=None))
    reconciliation = reconcile(counts, planted, complete=not missing_commits)
    totals = {
        "batches": len(counts),
        "input_rows": sum(b.input_rows for b in counts),
        "quarantine_input_rows": sum(b.quarantine_input_rows for b in counts),
        "duplicates": sum(b.duplicates for b in counts),
        "batch_ms": sum(b.ms for b in counts),
    }
    verification = Verification(
        ok=not missing_commits,
        gold=gold.summary(),
        quarantine=quarantine.summary(),
        quarantined_by_reason=_reasons(quarantine),
        counts=totals,
        reconciliation=reconciliation,
        problems=missing_commits[:MAX_EXAMPLES],
        document=join(plan.lake.runs, run_id, "verification.json"),
    )
    document = {
        "summary": verification.model_dump(mode="json"),
        "gold": gold.document(),
        "quarantine": quarantine.document(),
        "batches": [b.__dict__ for b in counts],
        "commits_missing": missing_commits,
        "foreign_seen_id_commits": [{"snapshot": s.snapshot_id, "summary": s.summary} for s in planted],
    }
    return verification, document


def maintenance_due(tables: dict[str, TableMetadata] | None, after_commits: int, now_ms: int) -> dict:
    """Whether table maintenance is worth a Spark application, from the tables' metadata alone (no
    manifest is read, so the decision costs the same however long the history): `after_commits`
    commits that added files to a table since its last maintenance commit (small files to merge),
    or a snapshot other than the current one older than the table's snapshot age (what expiry
    may remove). Until then its merges, expiry, manifest rewrite and orphan removal wait: a small
    run pays for none of them."""
    if not tables:
        return {"due": False, "reason": "the tables hold no commits yet"}
    for name, table in tables.items():
        commits = 0
        for snapshot in table.main_line():
            if snapshot.is_maintenance:
                break
            commits += snapshot.count("added-data-files") > 0
        if commits >= after_commits:
            return {"due": True, "reason": f"{name}: {commits} commits added files since its last maintenance"}
        max_age = int(table.properties.get("history.expire.max-snapshot-age-ms") or DEFAULT_SNAPSHOT_AGE_MS)
        old = [s for s in table.snapshots.values()
               if s.snapshot_id != table.current_snapshot_id and s.timestamp_ms < now_ms - max_age]  # fmt: skip
        if old:
            hours = max_age // 3_600_000
            return {"due": True, "reason": f"{name}: {len(old)} snapshots older than {hours} h to expire"}
    return {
        "due": False,
        "reason": f"fewer than {after_commits} commits added files since the last maintenance, "
        "and no snapshot is old enough to expire",
    }


def verify_gold(plan: RunPlan, storage: Storage, glue, database: str) -> Verification:
    """VerifyGold: verify the run's batches, write the detail beside its manifest, and say whether
    the tables need maintenance."""
    tables = read_tables(storage, glue, database)
    verification, document = verify_run(plan, plan.run_id, storage, glue, database, tables)
    verification.maintenance = maintenance_due(tables, plan.maintenance_after_commits, int(time.time() * 1000))
    document["summary"] = verification.model_dump(mode="json")
    storage.write_bytes(verification.document, json.dumps(document, indent=1, sort_keys=True, default=str).encode())
    return verification
