"""Gold compaction at one size, alone: our job over generated Bronze, then spark/compact.py as its
EMR step runs it after VerifyGold. Prints Gold's committed files and their median size before and
after, and the compaction's time against the job's in the same invocation.

    python -m bench.compaction --size 5GiB

`python -m bench.run` measures the same step in its full comparison (row "Gold compaction ...").
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import duckdb

from bench.run import ROOT, compact_gold, file_stats, run_our_job, spark_env
from generator.shards import DatasetPlan, summarise, write_dataset
from iotpipe.sink_log import committed_files
from iotpipe.sizes import parse_size
from iotpipe.storage import LocalStorage


def measure(size_text: str, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    bronze = work / "bronze"
    plan = DatasetPlan(out=str(bronze), seed=42, size_bytes=parse_size(size_text), shard_count=2)
    truth = summarise([asdict(m) for m in write_dataset(plan, processes=2)])
    env = spark_env()
    job, summary = run_our_job(bronze, work, "2g", env)
    if summary["gold_rows"] != truth["gold"]:
        raise RuntimeError(f"the job wrote {summary['gold_rows']} Gold rows, expected {truth['gold']}")
    before = file_stats([(f.uri, f.size) for f in committed_files(LocalStorage(), str(work / "gold"))])
    compacted = compact_gold(work, env)
    rows = summary["gold_rows"]
    files = [f.uri for f in committed_files(LocalStorage(), str(work / "gold"))]
    after_rows = duckdb.execute("select count(*) from read_parquet(?)", [files]).fetchone()[0]
    if after_rows != rows:
        raise RuntimeError(f"Gold holds {after_rows} rows after compaction, {rows} before")
    return {
        "size": size_text,
        "batches": summary["batches"],
        "job_seconds": round(job["seconds"], 1),
        "compaction_seconds": round(compacted["seconds"], 1),
        "compaction / job time": round(compacted["seconds"] / job["seconds"], 2),
        "files_before": before["files"],
        "median_file_mib_before": before["median_file_mib"],
        "files_after": compacted["files"],
        "median_file_mib_after": compacted["median_file_mib"],
        "files_replaced": compacted["files_replaced"],
        "gold_rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--work", default=str(ROOT / "bench-data" / "compaction"))
    args = parser.parse_args(argv)
    result = measure(args.size, Path(args.work))
    shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
