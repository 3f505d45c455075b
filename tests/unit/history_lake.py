"""A stand-in for S3 holding a lake with a long history, synthesised on demand, counting requests.

Gold has `history` batches of FILES_PER_BATCH files before the run and `run` batches after; the
quarantine's batch ids drift (half as many batches). The sink logs compact every 10 batches (a
compact file lists every file so far, built only if someone reads it), the checkpoint keeps the
last 100 offsets/commits as Spark does, and the ledger has an entry per batch. Cities have a
space and a non-ASCII letter, so the logged paths are URL-encoded as Spark writes them.

Listing a prefix whose size grows with the history (a whole sink, the ledger, Bronze, the
quarantine's reason partition) fails the test: that is the mistake the scale test exists to catch.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from datetime import date, timedelta
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from iotpipe.storage import ObjectInfo, join

LAKE = "s3://lake"
GOLD = f"{LAKE}/gold/iot_transformed"
QUARANTINE = f"{LAKE}/gold/quarantine"
CHECKPOINT = f"{LAKE}/artifacts/checkpoints/bronze-to-gold"
FILES_PER_BATCH = 10
BATCHES_PER_DAY = 100
RETAINED = 100
COMPACT_INTERVAL = 10
ROWS_PER_FILE = 3
EPOCH = 1_700_000_000.0


def _parquet(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"event_id": [f"e{i}" for i in range(rows)]}), sink)
    return sink.getvalue()


PARQUET = _parquet(ROWS_PER_FILE)


class HistoryLake:
    def __init__(self, history: int, run: int, missing_ledger: tuple = (), replayed: tuple = ()) -> None:
        # One query writes both sinks with the same batch ids.
        self.total = {"gold": history + run, "quarantine": history + run}
        self.run = run
        self.missing_ledger = set(missing_ledger)
        self.replayed = set(replayed)
        self.requests: Counter = Counter()
        self.written: dict[str, bytes] = {}
        self.moved: list[tuple[str, str]] = []
        self.leftovers: dict[str, float] = {}
        self.summaries: dict[str, dict] = {}
        self.gone: set[str] = set()  # committed files that have disappeared from storage

    # --- the synthetic history -------------------------------------------------------------
    def last(self, query: str) -> int:
        return self.total[query] - 1

    def before(self, query: str) -> int:
        return self.last(query) - self.run

    def batch_time(self, batch: int) -> float:
        return EPOCH + batch * 60

    def files(self, query: str, batch: int) -> list[str]:
        if query == "quarantine":
            return [f"{QUARANTINE}/reason=bad_json/part-{batch:06d}-0.c000.snappy.parquet"]
        day = date(2020, 1, 1) + timedelta(days=batch // BATCHES_PER_DAY)
        return [
            f"{GOLD}/date={day}/location_city=City {i} ü/part-{batch:06d}-{i}.c000.snappy.parquet"
            for i in range(FILES_PER_BATCH)
        ]

    @staticmethod
    def logged(uri: str) -> str:
        return "s3://" + quote(uri[len("s3://") :], safe="/=")

    def _entries(self, query: str, batch: int) -> list[dict]:
        return [{"path": self.logged(f), "size": len(PARQUET), "action": "add"} for f in self.files(query, batch)]

    def _log(self, entries: list[dict]) -> bytes:
        return ("v1\n" + "\n".join(json.dumps(e) for e in entries)).encode()

    def _object(self, uri: str) -> tuple[int, float, callable] | None:
        """(size, modified, content) of a synthesised object, or None."""
        if uri in self.gone:
            return None
        if uri in self.written:
            data = self.written[uri]
            return len(data), EPOCH, lambda: data
        if uri in (f"{LAKE}/artifacts/spark/job.py", f"{LAKE}/artifacts/spark/compact.py"):  # PlanRun checks for them
            return 1, EPOCH, lambda: b"#"
        if uri in self.leftovers:
            return len(PARQUET), self.leftovers[uri], lambda: PARQUET
        if uri in self.written:
            return len(self.written[uri]), EPOCH, lambda: self.written[uri]
        for query, sink in (("gold", GOLD), ("quarantine", QUARANTINE)):
            last = self.last(query)
            match = re.fullmatch(re.escape(f"{CHECKPOINT}/transform/") + r"(offsets|commits)/(\d+)", uri)
            if match and last - RETAINED <= int(match.group(2)) <= last:
                n = int(match.group(2))
                return 20, self.batch_time(n) - (30 if match.group(1) == "offsets" else -30), lambda: b"v1\n{}"
            match = re.fullmatch(re.escape(f"{sink}/_spark_metadata/") + r"(\d+)(\.compact)?", uri)
            if match and int(match.group(1)) <= last:
                n, compact = int(match.group(1)), bool(match.group(2))
                if compact != ((n + 1) % COMPACT_INTERVAL == 0):
                    return None
                if compact:
                    return (
                        1,
                        self.batch_time(n),
                        lambda n=n, q=query: self._log([e for b in range(n + 1) for e in self._entries(q, b)]),
                    )
                return 1, self.batch_time(n), lambda n=n, q=query: self._log(self._entries(q, n))
            match = re.fullmatch(re.escape(f"{CHECKPOINT}/ledger/{query}/") + r"(\d+)\.json", uri)
            if match and int(match.group(1)) <= last and (query, int(match.group(1))) not in self.missing_ledger:
                n = int(match.group(1))
                entry = {
                    "query": query,
                    "batch": n,
                    # every batch: its Gold rows are valid, one quarantined file's rows are not
                    "input_rows": (FILES_PER_BATCH + 1) * ROWS_PER_FILE,
                    "observed": {"valid": {"rows": FILES_PER_BATCH * ROWS_PER_FILE}},
                    "replay": (query, n) in self.replayed,
                    "files": [{"path": e["path"], "size": e["size"]} for e in self._entries(query, n)],
                }
                return 1, self.batch_time(n), lambda entry=entry: json.dumps(entry).encode()
            match = re.fullmatch(re.escape(sink) + r"/.*part-(\d+)-(\d+)\.c000\.snappy\.parquet", uri)
            if match and int(match.group(1)) <= last and uri in self.files(query, int(match.group(1))):
                return len(PARQUET), self.batch_time(int(match.group(1))), lambda: PARQUET
        match = re.fullmatch(re.escape(f"{CHECKPOINT}/runs/") + r"(.+)\.json", uri)
        if match and match.group(1) in self.summaries:
            return 1, EPOCH, lambda: json.dumps(self.summaries[match.group(1)]).encode()
        return None

    # --- the Storage protocol, counting requests ------------------------------------------------
    def stat(self, uri: str) -> ObjectInfo | None:
        self.requests["HEAD"] += 1
        found = self._object(uri)
        return ObjectInfo(uri, found[0], found[1]) if found else None

    def exists(self, uri: str) -> bool:
        return self.stat(uri) is not None

    def read_bytes(self, uri: str) -> bytes:
        self.requests["GET"] += 1
        found = self._object(uri)
        if found is None:
            raise FileNotFoundError(uri)
        return found[2]()

    def read_tail(self, uri: str, length: int) -> bytes:
        return self.read_bytes(uri)[-length:]

    def write_bytes(self, uri: str, data: bytes) -> None:
        self.requests["PUT"] += 1
        self.written[uri] = bytes(data)

    def move(self, source_uri: str, target_uri: str) -> None:
        self.requests["COPY"] += 1
        self.requests["DELETE"] += 1
        self.moved.append((source_uri, target_uri))
        self.leftovers.pop(source_uri, None)

    def delete(self, uri: str) -> None:
        self.requests["DELETE"] += 1
        self.written.pop(uri, None)

    def open_writer(self, uri: str):
        raise NotImplementedError

    def list(self, prefix_uri: str) -> list[ObjectInfo]:
        found = self._list(prefix_uri.rstrip("/"))
        self.requests["LIST"] += max(1, math.ceil(len(found) / 1000))
        return found

    def list_first(self, prefix_uri: str, limit: int) -> list[ObjectInfo]:
        self.requests["LIST"] += 1
        return self._list(prefix_uri.rstrip("/"))[:limit]

    def _list(self, prefix: str) -> list[ObjectInfo]:
        for query in ("gold", "quarantine"):
            last = self.last(query)
            for kind in ("offsets", "commits"):
                if prefix == f"{CHECKPOINT}/transform/{kind}":
                    uris = [join(prefix, str(n)) for n in range(max(0, last - RETAINED), last + 1)]
                    return [self.stat_quietly(u) for u in uris]
            if prefix == f"{CHECKPOINT}/transform/sources/0":
                return []
        if prefix in (f"{CHECKPOINT}/gold/offsets", f"{CHECKPOINT}/quarantine/offsets"):
            return []  # the two-query job's checkpoints, which PlanRun refuses: this lake has none
        if prefix == f"{LAKE}/artifacts/runs/orphans-withheld":  # notes of runs that found a live driver
            return [self.stat_quietly(u) for u in sorted(self.written) if u.startswith(prefix + "/")]
        if prefix == f"{GOLD}/_compaction/journal":  # compactions not yet past their grace period: none here
            return [self.stat_quietly(u) for u in sorted(self.written) if u.startswith(prefix + "/")]
        match = re.fullmatch(re.escape(GOLD) + r"/date=([\d-]+)/location_city=([^/]+)", prefix)
        if match:
            day = (date.fromisoformat(match.group(1)) - date(2020, 1, 1)).days
            batches = range(day * BATCHES_PER_DAY, min((day + 1) * BATCHES_PER_DAY, self.total["gold"]))
            uris = [f for b in batches for f in self.files("gold", b) if f.startswith(prefix + "/")]
            uris = [f for f in uris if f not in self.gone]
            uris += [u for u in self.leftovers if u.startswith(prefix + "/")]
            return [self.stat_quietly(u) for u in sorted(uris)]
        raise AssertionError(f"listed a prefix that grows with the lake's history: {prefix}")

    def stat_quietly(self, uri: str) -> ObjectInfo:
        found = self._object(uri)
        return ObjectInfo(uri, found[0], found[1])
