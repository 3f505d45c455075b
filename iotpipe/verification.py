"""VerifyGold: check the sinks against their own commit logs and tidy what the log disowns.

Every file in `_spark_metadata` must exist with its logged size. Files under a sink that the
log never committed (left by failed attempts) are moved aside, because Athena and Glue
crawlers ignore `_spark_metadata` and would read them as data. Row counts come from Parquet
footers of the files committed during this run, the rest of the numbers from the job's ledger.
"""

from __future__ import annotations

import json
import struct
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from iotpipe.models import RunPlan, SinkVerification, Verification
from iotpipe.sink_log import committed_files, data_files
from iotpipe.storage import Storage, join

FOOTER_TRAILER = 8


def parquet_row_count(storage: Storage, uri: str) -> int:
    """Rows in a Parquet file, read from its footer alone (two small ranged reads)."""
    trailer = storage.read_tail(uri, FOOTER_TRAILER)
    if trailer[4:] != b"PAR1":
        raise ValueError(f"not a Parquet file: {uri}")
    footer_length = struct.unpack("<I", trailer[:4])[0]
    tail = storage.read_tail(uri, footer_length + FOOTER_TRAILER)
    return pq.read_metadata(pa.BufferReader(b"PAR1" + tail)).num_rows


def _partition_of(uri: str, sink_uri: str) -> str:
    relative = uri[len(sink_uri.rstrip("/")) + 1 :]
    return relative.rsplit("/", 1)[0] if "/" in relative else ""


def verify_sink(storage: Storage, sink_uri: str, name: str, committed_before: int, aside_uri: str) -> SinkVerification:
    committed = committed_files(storage, sink_uri)
    present = {info.uri: info.size for info in storage.list(sink_uri)}
    missing = [f.uri for f in committed if f.uri not in present]
    mismatched = [f.uri for f in committed if f.uri in present and present[f.uri] != f.size]
    committed_uris = {f.uri for f in committed}
    moved = []
    for uri in data_files(storage, sink_uri):
        if uri not in committed_uris:
            target = join(aside_uri, name, uri[len(sink_uri.rstrip("/")) + 1 :])
            storage.move(uri, target)
            moved.append(target)
    new = [f for f in committed if f.batch > committed_before and f.uri in present]
    rows = Counter()
    for f in new:
        rows[_partition_of(f.uri, sink_uri)] += parquet_row_count(storage, f.uri)
    return SinkVerification(
        committed_files=len(committed),
        missing_files=missing,
        size_mismatches=mismatched,
        moved_aside=moved,
        new_files=len(new),
        new_batches={f.batch for f in new},
        new_rows=sum(rows.values()),
        rows_by_partition=dict(sorted(rows.items())),
    )


def read_ledger(storage: Storage, checkpoint_uri: str, committed_before: dict[str, int]) -> dict:
    """Input rows and observed counts of this run's batches, as the job recorded them."""
    ledger: dict = {}
    for query in ("gold", "quarantine"):
        entries = []
        for info in storage.list(join(checkpoint_uri, "ledger", query)):
            if info.uri.endswith(".json"):
                entry = json.loads(storage.read_bytes(info.uri))
                if entry["batch"] > committed_before.get(query, -1):
                    entries.append(entry)
        ledger[query] = sorted(entries, key=lambda e: e["batch"])
    return ledger


def verify_gold(plan: RunPlan, committed_before: dict[str, int], storage: Storage) -> Verification:
    aside = join(plan.lake.uncommitted, plan.run_id)
    gold = verify_sink(storage, plan.lake.gold, "iot_transformed", committed_before.get("gold", -1), aside)
    quarantine = verify_sink(storage, plan.lake.quarantine, "quarantine", committed_before.get("quarantine", -1), aside)
    ledger = read_ledger(storage, plan.lake.checkpoint, committed_before)
    input_rows = sum(e["input_rows"] for e in ledger["gold"])
    valid_rows = sum(int(e["observed"].get("valid", {}).get("rows", 0)) for e in ledger["gold"])
    ok = not (gold.missing_files or gold.size_mismatches or quarantine.missing_files or quarantine.size_mismatches)
    return Verification(
        ok=ok,
        gold=gold,
        quarantine=quarantine,
        ledger={
            "batches": len(ledger["gold"]),
            "complete": gold.new_batches <= {e["batch"] for e in ledger["gold"]},
            "input_rows": input_rows,
            "duplicates": valid_rows - gold.new_rows,
        },
    )
