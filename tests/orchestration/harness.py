"""What the orchestration tests share: the local engine on a lake folder, the generator's truth,
the readers of the lake's tables, and the coverage of the state machine's states, branches and
catches across modules (the last test of test_state_machine.py checks it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from generator.shards import read_manifests, summarise
from iotpipe.lake.tables import DATABASE, LOCAL_CATALOG_FILE, SPARK_CATALOG
from iotpipe.local.runner import DEFINITION, LocalEngine, execute
from iotpipe.query import run_query
from iotpipe.run.lease_store import FileLeaseStore
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import decide
from tests.suite_records import record


def definition() -> dict:
    return json.loads(DEFINITION.read_text())


def record_coverage(execution) -> None:
    """Note the states an execution entered, the Choice branches and the Catch edges it took, for
    the suite's coverage check (state_coverage)."""
    states = definition()["States"]
    entered = [e for e in execution.history if "stateEnteredEventDetails" in e]
    top_level = [e["stateEnteredEventDetails"]["name"] for e in entered]
    flow = [name for name in top_level if name in states]
    failed_states = set()
    current = None
    for event in execution.history:
        if "stateEnteredEventDetails" in event and event["stateEnteredEventDetails"]["name"] in states:
            current = event["stateEnteredEventDetails"]["name"]
        elif event["type"] in ("TaskFailed", "MapStateFailed", "ExecutionFailed", "MapRunFailed") and current:
            failed_states.add(current)
    catches = [
        (previous, following)
        for previous, following in zip(flow, flow[1:])
        if previous in failed_states and following in {c["Next"] for c in states[previous].get("Catch", [])}
    ]
    record("coverage", {"states": top_level, "edges": list(zip(flow, flow[1:])), "catches": catches})


def every_path() -> tuple[set, set, set]:
    """The definition's states (the Map's too), Choice branches and Catch edges."""
    machine = definition()
    states = set(machine["States"]) | set(machine["States"]["GenerateShards"]["ItemProcessor"]["States"])
    choices = {
        (name, target)
        for name, state in machine["States"].items()
        if state["Type"] == "Choice"
        for target in [c["Next"] for c in state["Choices"]] + [state["Default"]]
    }
    catches = {(name, c["Next"]) for name, state in machine["States"].items() for c in state.get("Catch", [])}
    return states, choices, catches


def state_coverage(executions: list[dict]) -> tuple[str, list[str]]:
    """What the recorded executions covered of the definition (a line to print) and what they missed:
    every state entered, every Choice branch and every Catch edge taken."""
    states, choices, catches = every_path()
    entered = {name for e in executions for name in e["states"]}
    edges = {tuple(edge) for e in executions for edge in e["edges"]}
    caught = {tuple(edge) for e in executions for edge in e["catches"]}
    missing = [f"state {name} never entered" for name in sorted(states - entered)]
    missing += [f"choice branch {a} -> {b} never taken" for a, b in sorted(choices - edges)]
    missing += [f"catch {a} -> {b} never taken" for a, b in sorted(catches - caught)]
    line = (f"state coverage: {len(states & entered)}/{len(states)} states, {len(choices & edges)}/{len(choices)} "
            f"choice branches, {len(catches & caught)}/{len(catches)} catch edges")  # fmt: skip
    return line, missing


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


def iceberg_table(lake: Path, name: str):
    """A table of the lake as PyIceberg, an independent Iceberg reader, loads it from the catalog."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(SPARK_CATALOG, uri=f"sqlite:///{lake.joinpath(*LOCAL_CATALOG_FILE)}")
    return catalog.load_table(f"{DATABASE}.{name}")


def gold_counts(lake: Path) -> tuple[int, int]:
    """Gold's rows and distinct event ids, as a plain Iceberg reader (PyIceberg) reads the table."""
    import pyarrow.compute as pc

    ids = iceberg_table(lake, "gold").scan(selected_fields=("event_id",)).to_arrow()["event_id"]
    return len(ids), len(pc.unique(ids))


def assert_readers_agree(lake: Path) -> dict:
    """`iotpipe query` (Athena's tables, locally) and PyIceberg read the same rows of Gold and the
    quarantine: the same count, the same ids, none twice in Gold. Returns the counts."""
    import pyarrow.compute as pc

    counts = {}
    for table in ("gold", "quarantine"):
        plain = iceberg_table(lake, table).scan(selected_fields=("event_id",)).to_arrow()["event_id"]
        rows = run_query(str(lake), f"select event_id from {table}")[1]
        assert sorted(r[0] or "" for r in rows) == sorted(v or "" for v in plain.to_pylist()), table
        counts[table] = len(rows)
        if table == "gold":
            assert len(pc.unique(plain)) == len(plain), "an event id twice in Gold"
    return counts


def truth(lake: Path) -> dict:
    return summarise(read_manifests(str(lake / "bronze" / "raw")))


def terminated(execution) -> list[str]:
    return [detail for what, detail in execution.bindings.calls if what == "emr.terminate"]


def created(execution) -> list[str]:
    return [detail for what, detail in execution.bindings.calls if what == "emr.create"]


def generate_into(lake: Path, seed: int, size: str = "2MiB", shards: int = 2, days: int | None = 1) -> None:
    """Bronze objects as the generator writes them; `days` narrows the events to fewer dates (fewer
    Gold partitions, so fewer files per batch: a quicker test)."""
    command = [sys.executable, "-m", "iotpipe.cli", "generate", "--out", str(lake / "bronze" / "raw"),
               "--size", size, "--shards", str(shards), "--seed", str(seed)]  # fmt: skip
    subprocess.run(command + (["--days", str(days)] if days else []), check=True, capture_output=True)


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
