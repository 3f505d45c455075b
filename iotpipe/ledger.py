"""The job's per-batch ledger: `<checkpoint>/ledger/<query>/<batch>.json`, one entry per committed batch.

The Spark driver writes an entry as soon as it sees a batch finish: input rows, the counts it
observed with `DataFrame.observe`, the files the batch committed to its sink (so a reader never
has to open a compact sink-log file, which holds the whole history), and whether the batch is a
replay of one an earlier attempt left planned but uncommitted (so its partitions may hold files
of the crashed attempt). Readers fetch entries by key for the batches of their window only.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

from iotpipe.sink_log import BatchFiles, query_checkpoint, read_checkpoint
from iotpipe.storage import Storage, join


def entry_uri(checkpoint_uri: str, query: str, batch: int) -> str:
    return join(checkpoint_uri, "ledger", query, f"{batch}.json")


def read_entry(storage: Storage, checkpoint_uri: str, query: str, batch: int) -> Optional[dict]:
    """The batch's entry, or None if the driver never wrote it (it was killed right after the commit)."""
    uri = entry_uri(checkpoint_uri, query, batch)
    if storage.stat(uri) is None:
        return None
    return json.loads(storage.read_bytes(uri))


class LedgerWriter:
    """Writes one entry per committed batch for each sink, as the driver sees its progress."""

    def __init__(self, storage: Storage, checkpoint_uri: str, sinks: Dict[str, str]) -> None:
        self.storage, self.checkpoint_uri = storage, checkpoint_uri
        self.readers = {query: BatchFiles(storage, sink) for query, sink in sinks.items()}
        self.recorded: set = set()
        # Planned but uncommitted when this attempt started: the batches it replays.
        self.replays: Dict[str, set] = {}
        state = read_checkpoint(storage, query_checkpoint(checkpoint_uri))
        last = state.last_committed if state.last_committed is not None else -1
        for query in sinks:
            self.replays[query] = {b for b in state.offsets if b > last}

    def record(self, query: str, progress: dict) -> Optional[dict]:
        """Write the entry of a finished batch once it is committed; return it (None if not yet)."""
        batch = progress["batchId"]
        if (query, batch) in self.recorded:
            return None
        commit = join(query_checkpoint(self.checkpoint_uri), "commits", str(batch))
        if self.storage.stat(commit) is None:
            return None  # an idle trigger's progress, or a batch whose commit is not written yet
        files: List = self.readers[query].files(batch) or []
        entry = {
            "query": query,
            "batch": batch,
            "input_rows": progress.get("numInputRows", 0),
            "observed": progress.get("observedMetrics", {}) or {},
            "ms": (progress.get("durationMs") or {}).get("triggerExecution"),
            "replay": batch in self.replays.get(query, ()),
            "files": [{"path": path, "size": size} for path, size in files],
        }
        self.storage.write_bytes(entry_uri(self.checkpoint_uri, query, batch), json.dumps(entry).encode())
        self.recorded.add((query, batch))
        return entry
