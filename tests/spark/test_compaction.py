"""Gold compaction on a real lake: the streaming job writes small files over several batches, the
compaction's Spark side merges them and swaps them into the sink log, its catalog side moves
Athena's manifests. Every reader (Spark through the sink log, DuckDB over committed files, Athena
through its manifests) sees the same rows before, during and after, and a compaction cut short at
any step is finished or undone by the next."""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from iotpipe import compaction, query
from iotpipe.manifests import listed_files, manifest_folder, manifest_folder_now, write_manifests
from iotpipe.settings import Settings
from iotpipe.sink_log import BatchFiles, committed_files, logged_uri
from iotpipe.storage import LocalStorage
from spark import compact, job
from tests.spark.test_streaming_job import event

pytestmark = pytest.mark.spark

# Cities whose directory names Hive-escape (or that a type inference would change).
CITIES = ["Berlin", "St. John's", "100% town", "00123"]


def write_bronze(bronze: Path, first: int, objects: int) -> None:
    bronze.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + objects):
        lines = [
            event(f"e{index}-{city}-{n}", f"2026-11-2{n % 2}T10:0{index % 10}:00Z", city=city)
            for city in CITIES
            for n in range(3)
        ]
        path = bronze / f"part-{index:05d}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.utime(path, (1_700_000_000 + index * 10, 1_700_000_000 + index * 10))


def stream(spark, settings: Settings) -> dict:
    lake = {"bronze": settings.bronze_uri, "gold": settings.gold_uri, "quarantine": settings.quarantine_uri}
    argv = [f"--{name}={uri}" for name, uri in lake.items()] + [f"--checkpoint={settings.checkpoint_uri}"]
    argv += ["--max-files-per-trigger", "1", "--shuffle-partitions", "2"]
    return job.run(spark, job.build_parser().parse_args(argv))


def publish_manifests(storage, gold: str, first: int, last: int) -> None:
    """VerifyGold's manifests for batches first..last (from the sink log, as the ledger lists them)."""
    files = BatchFiles(storage, gold)
    by_partition_and_batch: dict = {}
    for batch in range(first, last + 1):
        for path, _ in files.files(batch) or []:
            uri = logged_uri(path, gold)
            partition = uri[len(gold) + 1 :].rsplit("/", 1)[0]
            by_partition_and_batch.setdefault((partition, batch), []).append(uri)
    write_manifests(storage, gold, by_partition_and_batch, compaction.moving_locations(storage, gold))


@pytest.fixture
def small_files_lake(spark, tmp_path) -> Path:
    """Four batches of the same eight partitions: four small files each. (A lake cannot be copied:
    its sink log names files by absolute path.)"""
    lake = tmp_path / "lake"
    settings = Settings.for_local_lake(str(lake))
    write_bronze(Path(settings.bronze_uri), 0, 4)
    summary = stream(spark, settings)
    assert summary["batches"] == 4
    publish_manifests(LocalStorage(), settings.gold_uri, 0, 3)
    return lake


class Crash(RuntimeError):
    pass


class Catalog:
    """The catalog's side of a relocation, recorded (Glue's own API is tested in tests/unit/test_catalog.py)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.locations: dict = {}
        self.fail_after = fail_after

    def __call__(self, moves: dict) -> None:
        for partition, folder in sorted(moves.items()):
            if self.fail_after is not None and len(self.locations) >= self.fail_after:
                raise Crash("the catalog call failed")
            self.locations[partition] = folder


class Readers:
    """The rows each reader of Gold sees, as comparable multisets."""

    def __init__(self, spark, lake: Path, catalog: Catalog | None = None) -> None:
        self.spark, self.lake = spark, lake
        self.catalog = catalog or Catalog()
        self.settings = Settings.for_local_lake(str(lake))
        self.storage = LocalStorage()

    @contextmanager
    def cities_as_strings(self):
        """Partition values as their directories hold them ("00123", not 123), as Athena types them."""
        key = "spark.sql.sources.partitionColumnTypeInference.enabled"
        self.spark.conf.set(key, "false")
        try:
            yield
        finally:
            self.spark.conf.unset(key)

    def spark_rows(self) -> Counter:
        with self.cities_as_strings():
            rows = self.spark.read.parquet(self.settings.gold_uri).collect()
        return Counter((r.event_id, str(r.date), r.location_city) for r in rows)

    def duckdb_rows(self) -> Counter:
        _, rows = query.run_query(str(self.lake), "SELECT event_id, CAST(date AS VARCHAR), location_city FROM gold")
        return Counter(tuple(row) for row in rows)

    def athena_rows(self) -> Counter:
        """What Athena reads: the files listed in the manifests of the folder the catalog names for
        each partition (its usual one until a compaction moved it), their rows read by Spark."""
        gold = self.settings.gold_uri
        partitions = {f.uri[len(gold) + 1 :].rsplit("/", 1)[0] for f in self.committed()}
        listed = []
        for partition in sorted(partitions):
            folder = self.catalog.locations.get(partition) or manifest_folder(gold, partition)
            for info in self.storage.list(folder.rstrip("/") + "/"):
                listed += [line for line in Path(info.uri).read_text().split("\n") if line]
        assert len(listed) == len(set(listed)), "Athena would read a file twice"
        with self.cities_as_strings():
            rows = self.spark.read.option("basePath", self.settings.gold_uri).parquet(*listed).collect()
        return Counter((r.event_id, str(r.date), r.location_city) for r in rows)

    def committed(self):
        return committed_files(self.storage, self.settings.gold_uri)

    def all_agree(self, expected: Counter) -> None:
        assert self.spark_rows() == expected
        assert self.duckdb_rows() == expected
        assert self.athena_rows() == expected


def compact_args(settings: Settings, run_id: str = "run-1") -> list:
    return compact.build_parser().parse_args(
        ["--gold", settings.gold_uri, "--checkpoint", settings.checkpoint_uri, "--run-id", run_id]
    )


def test_compaction_merges_each_partition_into_one_file_and_every_reader_sees_the_same_rows(
    spark, small_files_lake, tmp_path
):
    lake = small_files_lake
    readers = Readers(spark, lake)
    settings, storage = readers.settings, readers.storage
    before = readers.spark_rows()
    assert sum(before.values()) == 4 * 4 * 3 and max(before.values()) == 1
    readers.all_agree(before)
    files_before = readers.committed()
    assert len(files_before) == 4 * 8  # four batches of eight partitions

    outcome = compact.run(spark, compact_args(settings))
    assert (outcome["batch"], outcome["partitions"], outcome["files_replaced"]) == (3, 8, 32)
    after = readers.committed()
    assert len(after) == 8 and all("part-compacted-3-" in f.uri for f in after)
    # Spark and DuckDB read the merged files; Athena still reads the small ones, which stay.
    readers.all_agree(before)
    assert all(Path(f.uri).exists() for f in files_before)
    summary = json.loads(Path(compaction.summary_uri(settings.checkpoint_uri, "run-1")).read_text())
    assert summary["files_replaced"] == 32

    catalog = readers.catalog
    published = compaction.publish_pending(storage, settings.gold_uri, catalog, now=1000.0, grace=60)
    assert published.resumed == [3] and len(catalog.locations) == 8
    for partition, folder in catalog.locations.items():
        assert folder.rstrip("/") == manifest_folder_now(storage, settings.gold_uri, partition)
        assert len(listed_files(storage, settings.gold_uri, partition)) == 1
    readers.all_agree(before)

    # Before the grace period is over nothing is deleted; after it, the small files and old folders are.
    assert compaction.publish_pending(storage, settings.gold_uri, catalog, now=1030.0, grace=60).deleted == 0
    cleaned = compaction.publish_pending(storage, settings.gold_uri, catalog, now=1061.0, grace=60)
    assert cleaned.cleaned == [3] and cleaned.deleted == 32 + 32  # the files and the batches' manifests
    assert not any(Path(f.uri).exists() for f in files_before)
    readers.all_agree(before)

    # The streaming job continues from the rewritten log: late rows for the same partitions.
    write_bronze(Path(settings.bronze_uri), 4, 1)
    assert stream(spark, settings)["batches"] == 1
    publish_manifests(storage, settings.gold_uri, 4, 4)
    grown = readers.spark_rows()
    assert sum(grown.values()) == 5 * 4 * 3 and max(grown.values()) == 1 and set(before) < set(grown)
    readers.all_agree(grown)
    assert len(readers.committed()) == 16


def crash_at(monkeypatch, target, name: str, after: int = 0) -> None:
    """Make `target.name` raise Crash on its call number `after` + 1 (earlier calls run)."""
    original = getattr(target, name)
    calls = []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise Crash(f"{name} cut short")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, crashing)


# Each step of a compaction, cut short; the next compaction (and catalog step) must finish or undo it.
# (step, what raises, on its call number after + 1, the files Spark reads after the cut)
SPARK_SIDE_CRASHES = [
    ("before the merged files are written", compact.SparkMerger, "__call__", 0, 32),
    ("before the journal says they are written", compaction, "merged_entry", 3, 32),
    ("before the log is swapped", compaction, "swap_in", 0, 32),
    ("after the swap, before the journal records it", compaction, "partition_files", 0, 8),
]
# (step, the catalog fails after this many moves, or what raises on its call number after + 1)
CATALOG_SIDE_CRASHES = [
    ("after the lists froze, before any folder is written", None, "compacted_folder", 0),
    ("before the first catalog move", 0, None, None),
    ("after three catalog moves", 3, None, None),
    ("after the catalog moved and three pointers", None, "write_location", 3),
]


@pytest.mark.parametrize("step, target, name, after, files", SPARK_SIDE_CRASHES, ids=[c[0] for c in SPARK_SIDE_CRASHES])
def test_a_compaction_cut_short_on_the_spark_side_loses_and_doubles_no_row(
    spark, small_files_lake, tmp_path, monkeypatch, step, target, name, after, files
):
    lake = small_files_lake
    readers = Readers(spark, lake)
    settings, storage = readers.settings, readers.storage
    before = readers.spark_rows()
    with monkeypatch.context() as patch:
        crash_at(patch, target, name, after)
        with pytest.raises(Crash):
            compact.run(spark, compact_args(settings))
    readers.all_agree(before)
    assert len(readers.committed()) == files

    again = compact.run(spark, compact_args(settings, "run-2"))
    readers.all_agree(before)
    assert len(readers.committed()) == 8
    assert again["undone"] or again["resumed"]
    if again["undone"]:  # the first attempt's merged files are gone, not left beside the new ones
        assert again["partitions"] == 8
    leftovers = [p for p in Path(settings.gold_uri).rglob("part-compacted-*")]
    assert len(leftovers) == 8, leftovers
    compaction.publish_pending(storage, settings.gold_uri, readers.catalog, grace=0)
    readers.all_agree(before)
    assert not list(Path(settings.gold_uri, compaction.COMPACTION_FOLDER).rglob("journal/*.json"))


@pytest.mark.parametrize("step, moves, name, after", CATALOG_SIDE_CRASHES, ids=[c[0] for c in CATALOG_SIDE_CRASHES])
def test_a_publication_cut_short_is_finished_by_a_later_run_and_readers_agree_throughout(
    spark, small_files_lake, tmp_path, monkeypatch, step, moves, name, after
):
    """A batch lands and is verified between the cut and the next publication: its rows reach
    every reader once, whichever folder the catalog names for its partitions meanwhile."""
    lake = small_files_lake
    readers = Readers(spark, lake)
    settings, storage = readers.settings, readers.storage
    before = readers.spark_rows()
    compact.run(spark, compact_args(settings))
    catalog = readers.catalog
    catalog.fail_after = moves
    with monkeypatch.context() as patch:
        if name is not None:
            crash_at(patch, compaction, name, after)
        with pytest.raises(Crash):
            compaction.publish_pending(storage, settings.gold_uri, catalog, now=1000.0, grace=0)
    catalog.fail_after = None
    readers.all_agree(before)

    write_bronze(Path(settings.bronze_uri), 4, 1)  # the next run: a batch, its VerifyGold, its compaction
    assert stream(spark, settings)["batches"] == 1
    publish_manifests(storage, settings.gold_uri, 4, 4)
    grown = readers.spark_rows()
    assert sum(grown.values()) == 5 * 4 * 3
    readers.all_agree(grown)
    with monkeypatch.context() as patch:  # the next run's compaction finds nothing more worth merging
        patch.setattr(compaction, "plan", lambda *args: [])
        compact.run(spark, compact_args(settings, "run-2"))
    readers.all_agree(grown)
    finished = compaction.publish_pending(storage, settings.gold_uri, catalog, now=2000.0, grace=0)
    assert finished.resumed == [3] and finished.cleaned == [3]
    readers.all_agree(grown)
    for partition, folder in catalog.locations.items():
        assert folder.rstrip("/") == manifest_folder_now(storage, settings.gold_uri, partition)
    publish_manifests(storage, settings.gold_uri, 0, 4)  # a drain round's VerifyGold re-verifies the run
    readers.all_agree(grown)


def test_compaction_refuses_a_sink_with_a_batch_not_committed(spark, small_files_lake, tmp_path):
    lake = small_files_lake
    settings = Settings.for_local_lake(str(lake))
    commits = Path(settings.checkpoint_uri, "transform", "commits")
    (commits / "3").unlink()
    outcome = compact.run(spark, compact_args(settings))
    assert "planned and not committed" in outcome["skipped"]
    assert len(committed_files(LocalStorage(), settings.gold_uri)) == 32
