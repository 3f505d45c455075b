"""What the orchestration tests share: the local engine on a lake folder, the generator's truth,
and the coverage of the state machine's states, branches and catches across modules (the last
test of test_state_machine.py checks it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import duckdb

from generator.shards import read_manifests, summarise
from iotpipe import catalog, compaction
from iotpipe.glue_registration import SINKS
from iotpipe.lease import FileLeaseStore
from iotpipe.local.runner import DEFINITION, LocalEngine, execute
from iotpipe.manifests import listed_files, manifest_folder_now
from iotpipe.settings import Settings
from iotpipe.sink_log import committed_files, logged_uri
from iotpipe.storage import LocalStorage
from iotpipe.trigger import decide

COVERAGE: dict[str, set] = defaultdict(set)


def definition() -> dict:
    return json.loads(DEFINITION.read_text())


def record_coverage(execution) -> None:
    states = definition()["States"]
    entered = [e for e in execution.history if "stateEnteredEventDetails" in e]
    top_level = [e["stateEnteredEventDetails"]["name"] for e in entered]
    COVERAGE["states"].update(top_level)
    flow = [name for name in top_level if name in states]
    for previous, following in zip(flow, flow[1:]):
        COVERAGE["edges"].add((previous, following))
    failed_states = set()
    current = None
    for event in execution.history:
        if "stateEnteredEventDetails" in event and event["stateEnteredEventDetails"]["name"] in states:
            current = event["stateEnteredEventDetails"]["name"]
        elif event["type"] in ("TaskFailed", "MapStateFailed", "ExecutionFailed", "MapRunFailed") and current:
            failed_states.add(current)
    for previous, following in zip(flow, flow[1:]):
        catches = {c["Next"] for c in states[previous].get("Catch", [])}
        if previous in failed_states and following in catches:
            COVERAGE["catches"].add((previous, following))


def local_settings(lake: Path, **overrides) -> Settings:
    values = dict(
        spark_job_uri=str(DEFINITION.parent.parent / "spark" / "job.py"),
        max_files_per_trigger=1,
        shuffle_partitions=2,
        lease_wait_seconds=1,
    )
    values.update(overrides)
    return Settings.for_local_lake(str(lake), **values)


def run(lake: Path, execution_input: dict, settings: Settings | None = None, **kwargs):
    settings = settings or local_settings(lake)
    execution = execute(str(lake), execution_input, settings=settings, spark_master="local[2]", **kwargs)
    record_coverage(execution)
    return execution


def engine(lake: Path, settings: Settings | None = None, **kwargs) -> LocalEngine:
    return LocalEngine(str(lake), settings or local_settings(lake), spark_master="local[2]", **kwargs)


def replaced_in_grace(sink: Path) -> set[str]:
    """The small files a compaction swapped out of the sink log and keeps until its grace period is
    over, which its journal names (readers that listed them before the swap may still be reading
    them; iotpipe.compaction). A sink holds these and its committed files, nothing else."""
    return {
        logged_uri(entry["path"], str(sink))
        for journal in compaction.pending_journals(LocalStorage(), str(sink))
        if journal.swapped
        for merge in journal.merges
        for entry in merge.replaced
    }


def plain_glob_gold(lake: Path) -> tuple[int, int]:
    """What a crawler would see: every Parquet file under the Gold prefix, but the small files a
    compaction replaced and keeps for its grace period (`replaced_in_grace`)."""
    gold = lake / "gold" / "iot_transformed"
    replaced = replaced_in_grace(gold)
    files = [str(p) for p in sorted(gold.glob("*/*/*.parquet")) if str(p) not in replaced]
    return duckdb.execute(
        "select count(*), count(distinct event_id) from read_parquet(?, hive_partitioning = true)", [files]
    ).fetchone()


def assert_catalog_holds_the_committed_partitions(lake: Path) -> None:
    """What Athena reads is what Spark reads through the sink logs: the local Glue catalog (kept by
    the engine) has a partition for exactly the directories holding a committed file, each at its
    manifests' folder (a compaction's once it moved the partition), and those manifests list
    exactly the partition's committed files: none of a crashed attempt's, none twice. A compaction
    swapped into the sink log but not published to Athena yet (PublishCompaction failed) leaves
    Athena the small files its merged file replaced, with the same rows."""
    kept = json.loads((lake / "catalog" / "glue.json").read_text())
    for table, sink in (("gold", lake / "gold" / "iot_transformed"), ("quarantine", lake / "gold" / "quarantine")):
        committed: dict[str, list[str]] = defaultdict(list)
        for file in committed_files(LocalStorage(), str(sink)):
            committed[str(Path(file.uri).parent.relative_to(sink))].append(file.uri)
        for journal in compaction.pending_journals(LocalStorage(), str(sink)):
            for merge in journal.merges if journal.swapped and journal.published_at is None else []:
                merged = logged_uri(merge.merged["path"], str(sink))
                if merged in committed[merge.partition]:
                    committed[merge.partition].remove(merged)
                    committed[merge.partition] += [logged_uri(e["path"], str(sink)) for e in merge.replaced]
        registered = sorted(p["Location"] for p in kept[f"iotpipe.{table}"])
        folders = [manifest_folder_now(LocalStorage(), str(sink), p) + "/" for p in committed]
        assert registered == sorted(folders) and committed, table
        for partition in kept[f"iotpipe.{table}"]:  # each is read as manifests, with the table's columns
            described = partition["StorageDescriptor"]
            assert {k: described[k] for k in catalog.SYMLINK_STORAGE} == catalog.SYMLINK_STORAGE, partition
            assert [c["Name"] for c in described["Columns"]] == [c.name for c in SINKS[table].columns]
        for partition, uris in committed.items():
            assert listed_files(LocalStorage(), str(sink), partition) == sorted(uris), (table, partition)


def truth(lake: Path) -> dict:
    return summarise(read_manifests(str(lake / "bronze" / "raw")))


def terminated(execution) -> list[str]:
    return [detail for what, detail in execution.bindings.calls if what == "emr.terminate"]


def created(execution) -> list[str]:
    return [detail for what, detail in execution.bindings.calls if what == "emr.create"]


def generate_into(lake: Path, seed: int, size: str = "2MiB", shards: int = 2) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "iotpipe.cli",
            "generate",
            "--out",
            str(lake / "bronze" / "raw"),
            "--size",
            size,
            "--shards",
            str(shards),
            "--seed",
            str(seed),
        ],
        check=True,
        capture_output=True,
    )


def object_created_events(lake: Path, folder: Path) -> None:
    """What S3 does on AWS for each new object: an 'Object Created' event, batched to the trigger,
    which finds the lease held and marks it pending."""
    settings = local_settings(lake)
    bronze = lake / "bronze" / "raw"
    keys = [f"raw/{p.relative_to(bronze)}" for p in folder.rglob("*") if p.is_file()]
    decide(keys, FileLeaseStore(settings.lease_store), settings.lease_key, settings.trigger_window_seconds)


def upload_after_first_step(lake: Path, seed: int):
    """A customisation: new Bronze objects land right after the run's first Spark step."""

    def customise(bindings):
        real = bindings.run_spark_step

        def step(args, step_id):
            result = real(args, step_id)
            if not (lake / "bronze" / "raw" / f"seed-{seed}").exists():
                generate_into(lake, seed)
                object_created_events(lake, lake / "bronze" / "raw" / f"seed-{seed}")
            return result

        bindings.run_spark_step = step

    return customise
