"""Read an Iceberg table's evidence without Spark: the catalog's pointer, the metadata file, its
snapshots (each batch's commit carries the batch's tags) and the data files a snapshot added.

The catalog holds one thing per table: where its current metadata file is (the Glue table's
`metadata_location` parameter; locally the JDBC catalog's row, read through the same call, see
`iotpipe.local.catalog`). Everything else is a file under the table's location, read by key
through the storage layer: the metadata JSON (schemas, snapshots with their summaries), a
snapshot's manifest list and its manifests (Avro, read with fastavro). So what a Lambda reads
grows with the run (its snapshots and their files), not with the table's history: snapshot
expiry bounds the metadata file, and a manifest list is read once per snapshot.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Iterable

from iotpipe.lake.storage import Storage
from iotpipe.lake.tags import (  # noqa: F401  (the tags, read here, are the job's)
    BATCH_ID,
    BATCH_STARTED_MS,
    DUPLICATES,
    EXECUTION,
    GOLD_SNAPSHOT,
    INPUT_ROWS,
    MAINTENANCE,
    QUERY_ID,
    RUN_ID,
    VALID_ROWS,
)

ADDED, DELETED = 1, 2  # a manifest entry's status (0 is EXISTING)
DATA = 0  # a file's content; 1 and 2 are position and equality deletes


class TableNotFound(LookupError):
    """The catalog has no such table (the job has not created it yet)."""


def metadata_location(glue, database: str, table: str) -> str | None:
    """The table's current metadata file, from the catalog; None when the table does not exist."""
    try:
        response = glue.get_table(DatabaseName=database, Name=table)
    except glue.exceptions.EntityNotFoundException:
        return None
    return (response["Table"].get("Parameters") or {}).get("metadata_location")


def storage_uri(path: str) -> str:
    """A path as Iceberg wrote it (`file:/…`, `file:///…`, `s3://…`, `s3a://…`) as the storage layer names it."""
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:"):
        return path[len("file:") :]
    if path.startswith("s3a://"):
        return "s3://" + path[len("s3a://") :]
    return path


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    operation: str
    summary: dict[str, str]
    manifest_list: str

    @property
    def query_id(self) -> str | None:
        return self.summary.get(QUERY_ID)

    @property
    def batch(self) -> int | None:
        value = self.summary.get(BATCH_ID)
        return int(value) if value is not None else None

    def count(self, name: str) -> int:
        """A numeric summary property (Iceberg's `added-records`, or the job's), 0 when absent."""
        return int(self.summary.get(name) or 0)

    @property
    def added_records(self) -> int:
        return self.count("added-records")

    @property
    def deleted_records(self) -> int:
        return self.count("deleted-records")

    @property
    def is_maintenance(self) -> bool:
        return MAINTENANCE in self.summary


@dataclass
class TableMetadata:
    location: str
    current_snapshot_id: int | None
    snapshots: dict[int, Snapshot]
    properties: dict[str, str] = field(default_factory=dict)
    metadata_uri: str = ""

    def main_line(self) -> list[Snapshot]:
        """The current snapshot and its ancestors, newest first, as far as expiry kept them."""
        line, snapshot_id = [], self.current_snapshot_id
        while snapshot_id is not None and snapshot_id in self.snapshots:
            snapshot = self.snapshots[snapshot_id]
            line.append(snapshot)
            snapshot_id = snapshot.parent_id
        return line

    def batches(self, query_id: str) -> dict[int, Snapshot]:
        """{batch id: its commit} on the main line, for the streaming query `query_id`."""
        return {s.batch: s for s in self.main_line() if s.query_id == query_id and s.batch is not None}

    def tagged_batches(self) -> set:
        """Every (query id, batch) committed on the main line, whatever the query."""
        return {(s.query_id, s.batch) for s in self.main_line() if s.batch is not None}


def _snapshot(raw: dict) -> Snapshot:
    summary = {str(k): str(v) for k, v in (raw.get("summary") or {}).items()}
    return Snapshot(
        snapshot_id=int(raw["snapshot-id"]),
        parent_id=int(raw["parent-snapshot-id"]) if raw.get("parent-snapshot-id") is not None else None,
        timestamp_ms=int(raw["timestamp-ms"]),
        operation=summary.get("operation", ""),
        summary=summary,
        manifest_list=storage_uri(raw.get("manifest-list", "")),
    )


def parse_metadata(text: bytes | str, metadata_uri: str = "") -> TableMetadata:
    raw = json.loads(text)
    main = (raw.get("refs") or {}).get("main") or {}
    current = main.get("snapshot-id", raw.get("current-snapshot-id"))
    current = None if current in (None, -1) else int(current)
    return TableMetadata(
        location=storage_uri(raw["location"]),
        current_snapshot_id=current,
        snapshots={s.snapshot_id: s for s in map(_snapshot, raw.get("snapshots") or [])},
        properties=dict(raw.get("properties") or {}),
        metadata_uri=metadata_uri,
    )


def read_metadata(storage: Storage, glue, database: str, table: str) -> TableMetadata:
    """The table's current metadata; raises TableNotFound if the catalog has no such table."""
    location = metadata_location(glue, database, table)
    if location is None:
        raise TableNotFound(f"the catalog has no table {database}.{table}")
    uri = storage_uri(location)
    return parse_metadata(storage.read_bytes(uri), uri)


@dataclass(frozen=True)
class DataFile:
    uri: str
    size: int
    records: int
    partition: dict
    content: int = DATA


def _avro_records(storage: Storage, uri: str) -> Iterable[dict]:
    import fastavro

    return fastavro.reader(io.BytesIO(storage.read_bytes(uri)))


def _data_file(entry: dict) -> DataFile:
    data = entry["data_file"]
    return DataFile(
        uri=storage_uri(data["file_path"]),
        size=int(data["file_size_in_bytes"]),
        records=int(data["record_count"]),
        partition=dict(data.get("partition") or {}),
        content=int(data.get("content") or DATA),
    )


def added_files(storage: Storage, snapshot: Snapshot) -> list[DataFile]:
    """The files `snapshot` added: only the manifests it wrote are read (one per commit, usually)."""
    files = []
    for manifest in _avro_records(storage, snapshot.manifest_list):
        if manifest.get("added_snapshot_id") != snapshot.snapshot_id or not manifest.get("added_files_count", 1):
            continue
        for entry in _avro_records(storage, storage_uri(manifest["manifest_path"])):
            written_by = entry.get("snapshot_id") or manifest.get("added_snapshot_id")
            if entry["status"] == ADDED and written_by == snapshot.snapshot_id:
                files.append(_data_file(entry))
    return files


def live_files(storage: Storage, snapshot: Snapshot) -> list[DataFile]:
    """Every file the table holds as of `snapshot` (data and delete files), from all its manifests."""
    files = []
    for manifest in _avro_records(storage, snapshot.manifest_list):
        for entry in _avro_records(storage, storage_uri(manifest["manifest_path"])):
            if entry["status"] != DELETED:
                files.append(_data_file(entry))
    return files
