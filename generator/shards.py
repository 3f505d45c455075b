"""Sized, sharded, deterministic Bronze output: objects, shards and their manifests.

The dataset is a sequence of objects; object j covers the j-th slice of the time span and its
bytes depend only on (seed, j, size, object size, spec). Shard i of N writes objects
j = i, i+N, i+2N, ... and then its manifest, so a retried shard rewrites the same keys with
the same bytes, and a manifest's presence means its shard is complete. Every key carries a
fingerprint of what decides the bytes besides the seed, so a dataset of another size or shape
with the same seed gets new keys and never rewrites an object Spark has already read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from generator.events import (
    DEFECT_KINDS,
    DUPLICATE_KIND,
    MS_PER_DAY,
    QUARANTINE_KINDS,
    ChunkGenerator,
    EventSpec,
    Fleet,
)
from iotpipe.lake.storage import join, storage_for

DEFAULT_OBJECT_BYTES = 128 * 1024**2
CHUNK_ROWS = 32_768
MANIFEST_DIR = "_manifests"
# `iotpipe run` sets this for the shard processes of its local Map: they print their progress as
# `IOTPIPE_GENERATOR_PROGRESS {...}` lines on stdout, which the runner shows.
GENERATOR_PROGRESS_ENV = "IOTPIPE_GENERATOR_PROGRESS"
GENERATOR_PROGRESS_PREFIX = "IOTPIPE_GENERATOR_PROGRESS "


@dataclass(frozen=True)
class DatasetPlan:
    """Where and how much to write; shared by every shard of one dataset."""

    out: str
    seed: int
    size_bytes: int
    shard_count: int
    object_bytes: int = DEFAULT_OBJECT_BYTES
    spec: EventSpec = EventSpec()

    def __post_init__(self) -> None:
        if self.shard_count < 1:
            raise ValueError("shard count must be at least 1")
        if self.size_bytes < 1024:
            raise ValueError("size must be at least 1 KiB")

    @property
    def object_count(self) -> int:
        return max(self.shard_count, math.ceil(self.size_bytes / self.object_bytes))

    @property
    def dataset_prefix(self) -> str:
        return join(self.out, f"seed-{self.seed}")

    @property
    def fingerprint(self) -> str:
        """8 hex digits from everything besides the seed and the object's index that decides an
        object's bytes: the same plan always gives it, another size or spec another one."""
        shape = {
            "size_bytes": self.size_bytes,
            "object_bytes": self.object_bytes,
            "object_count": self.object_count,
            "devices": self.spec.devices,
            "days": self.spec.days,
            "start": self.spec.start.isoformat(),
            "defect_rates": sorted(self.spec.defect_rates.items()),
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:8]

    def object_key(self, index: int) -> str:
        return join(self.dataset_prefix, f"part-{index:05d}-of-{self.object_count:05d}-{self.fingerprint}.jsonl")

    def manifest_key(self, shard_index: int) -> str:
        return join(
            self.out,
            MANIFEST_DIR,
            f"seed-{self.seed}",
            f"shard-{shard_index:04d}-of-{self.shard_count:04d}-{self.fingerprint}.json",
        )

    def objects_of_shard(self, shard_index: int) -> range:
        if not 0 <= shard_index < self.shard_count:
            raise ValueError(f"shard index {shard_index} outside 0..{self.shard_count - 1}")
        return range(shard_index, self.object_count, self.shard_count)

    def object_budget(self, index: int) -> int:
        base = self.size_bytes // self.object_count
        return base + (self.size_bytes - base * self.object_count if index == self.object_count - 1 else 0)

    def object_window_ms(self, index: int) -> tuple[int, int]:
        span = self.spec.days * MS_PER_DAY
        start = self.spec.start_ms
        return start + span * index // self.object_count, start + span * (index + 1) // self.object_count


@dataclass
class ShardManifest:
    seed: int
    shard_index: int
    shard_count: int
    records: int
    bytes: int
    objects: list[str]
    defects: dict[str, int]
    expected: dict

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def write_object(
    plan: DatasetPlan, generator: ChunkGenerator, index: int, storage, on_chunk: Callable[[int], None] | None = None
) -> tuple[int, int, dict[str, int]]:
    """Write object `index`; return (records, bytes, defect counts). `on_chunk` gets each chunk's bytes."""
    rng = np.random.default_rng([plan.seed, index])
    window_start, window_end = plan.object_window_ms(index)
    budget = plan.object_budget(index)
    records = written = 0
    counts = dict.fromkeys(DEFECT_KINDS, 0)
    emitted_rows = 0
    total_rows = max(1, budget // generator.clean_line_bytes)
    with storage.open_writer(plan.object_key(index)) as writer:
        while emitted_rows < total_rows:
            rows = min(CHUNK_ROWS, total_rows - emitted_rows)
            span = window_end - window_start
            chunk_start = window_start + span * emitted_rows // total_rows
            chunk_end = window_start + span * (emitted_rows + rows) // total_rows
            chunk = generator.chunk(rng, rows, chunk_start, chunk_end)
            writer.write(chunk.data)
            emitted_rows += rows
            records += chunk.records
            written += len(chunk.data)
            if on_chunk:
                on_chunk(len(chunk.data))
            for kind, count in chunk.counts.items():
                counts[kind] += count
    return records, written, counts


def shard_bytes(plan: DatasetPlan, shard_index: int) -> int:
    """About how many bytes a shard writes (its objects' budgets), for progress."""
    return sum(plan.object_budget(index) for index in plan.objects_of_shard(shard_index))


def write_shard(
    plan: DatasetPlan, shard_index: int, s3_client=None, on_progress: Callable[[int], None] | None = None
) -> ShardManifest:
    """Write every object of one shard, then its manifest (last, as the completion marker).
    `on_progress` gets the shard's bytes written so far, after every chunk."""
    storage = storage_for(plan.out, s3_client)
    generator = ChunkGenerator(plan.seed, plan.spec, Fleet.build(plan.seed, plan.spec))
    records = written = 0
    counts = dict.fromkeys(DEFECT_KINDS, 0)
    objects = []
    progress = [0]

    def chunk_written(size: int) -> None:
        progress[0] += size
        on_progress(progress[0])

    for index in plan.objects_of_shard(shard_index):
        object_records, object_bytes, object_counts = write_object(
            plan, generator, index, storage, chunk_written if on_progress else None
        )
        records += object_records
        written += object_bytes
        objects.append(plan.object_key(index))
        for kind, count in object_counts.items():
            counts[kind] += count
    quarantined = {kind: counts[kind] for kind in QUARANTINE_KINDS}
    manifest = ShardManifest(
        seed=plan.seed,
        shard_index=shard_index,
        shard_count=plan.shard_count,
        records=records,
        bytes=written,
        objects=objects,
        defects=counts,
        expected={
            "gold": records - sum(quarantined.values()) - counts[DUPLICATE_KIND],
            "quarantined": quarantined,
            "duplicates": counts[DUPLICATE_KIND],
        },
    )
    storage.write_bytes(plan.manifest_key(shard_index), manifest.to_json().encode())
    return manifest


def _write_shard_in_subprocess(args: tuple[DatasetPlan, int]) -> ShardManifest:
    plan, shard_index = args
    return write_shard(plan, shard_index)


def write_dataset(
    plan: DatasetPlan,
    shard_indexes: list[int] | None = None,
    processes: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[ShardManifest]:
    """Write the given shards (all by default), in parallel processes when there are several.
    `on_progress(shard, bytes written)` is called while shards are written in this process."""
    indexes = list(range(plan.shard_count)) if shard_indexes is None else shard_indexes
    workers = min(len(indexes), processes or os.cpu_count() or 1)
    if workers <= 1:
        return [
            write_shard(plan, index, on_progress=(lambda done, i=index: on_progress(i, done)) if on_progress else None)
            for index in indexes
        ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_write_shard_in_subprocess, [(plan, index) for index in indexes]))


def summarise(manifests: list[dict]) -> dict:
    """Add shard manifests (as dicts) up into the dataset's ground truth."""
    quarantined = dict.fromkeys(QUARANTINE_KINDS, 0)
    for manifest in manifests:
        for kind, count in manifest["expected"]["quarantined"].items():
            quarantined[kind] += count
    return {
        "records": sum(m["records"] for m in manifests),
        "bytes": sum(m["bytes"] for m in manifests),
        "objects": sum(len(m["objects"]) for m in manifests),
        "gold": sum(m["expected"]["gold"] for m in manifests),
        "quarantined": quarantined,
        "duplicates": sum(m["expected"]["duplicates"] for m in manifests),
        "city_variants": sum(m["defects"]["city_variant"] for m in manifests),
    }


def read_manifests(out: str, seed: int | None = None, s3_client=None) -> list[dict]:
    """Read the shard manifests under `out` (of one seed, or all)."""
    storage = storage_for(out, s3_client)
    prefix = join(out, MANIFEST_DIR, f"seed-{seed}") if seed is not None else join(out, MANIFEST_DIR)
    return [json.loads(storage.read_bytes(info.uri)) for info in storage.list(prefix) if info.uri.endswith(".json")]
