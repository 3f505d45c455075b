"""A local lake with a run history, built without Spark through the production code path.

Each run leaves what one committed micro-batch of the Spark job leaves (checkpoint offsets and
commits, Parquet files in Gold's date/city and the quarantine's reason partitions, the job's
ledger entries), then PlanRun, VerifyGold and ReportStatus's functions run on it as in a real
run: `plan_run`, `verify_gold` (which writes the verification document), `build_report`,
`write_manifest` and `record_run`. No manifest or document is written by hand, so they cannot
drift from what the pipeline writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iotpipe.models import RunReport
from iotpipe.planning import plan_run
from iotpipe.reporting import build_report, write_manifest
from iotpipe.run_history import record_run
from iotpipe.settings import Settings
from iotpipe.storage import LocalStorage
from iotpipe.verification import verify_gold

ROOT = Path(__file__).resolve().parent.parent.parent
# Spark's ExternalCatalogUtils.escapePathName: these characters become %XX in partition folder names.
_SPARK_ESCAPED = set("\"#%'*/:=?\\\x7f{[]^") | {chr(c) for c in range(0x20)}


def spark_escape(value: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in _SPARK_ESCAPED else c for c in value)


def _parquet(path: Path, rows: int) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_id": [f"{path.name}-{i}" for i in range(rows)]}), path)
    return {"path": path.as_uri(), "size": path.stat().st_size}


def _log(path: Path, entries: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("v1\n" + "".join(json.dumps(e) + "\n" for e in entries))


@dataclass
class RunSpec:
    name: str
    gold: dict[tuple[str, str], int] = field(default_factory=dict)  # (date, city) -> rows
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> rows
    duplicates: int = 0
    seconds: float = 60.0


class HistoryLake:
    """A local lake folder; `run(spec)` adds one run to its history and returns its report."""

    def __init__(self, root: Path, first_finish: datetime | None = None) -> None:
        self.root = root
        self.storage = LocalStorage()
        # A tiny history with a large share quarantined: no quality rule applies to it here.
        permissive = {"quality_max_quarantine_ratio": 1.0, "quality_max_duplicate_ratio": 1.0}
        self.settings = Settings.for_local_lake(str(root), spark_job_uri=str(ROOT / "spark" / "job.py"), **permissive)
        self.batch = -1
        self.clock = first_finish or datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)

    @property
    def checkpoint(self) -> Path:
        return Path(self.settings.checkpoint_uri)

    def _commit_batch(self, spec: RunSpec) -> None:
        self.batch += 1
        batch = self.batch
        input_rows = sum(spec.gold.values()) + sum(spec.quarantined.values()) + spec.duplicates
        gold_files = [
            _parquet(Path(self.settings.gold_uri) / f"date={date}" / f"location_city={spark_escape(city)}"
                     / f"part-{batch:05d}-{i}.c000.snappy.parquet", rows)
            for i, ((date, city), rows) in enumerate(sorted(spec.gold.items()))
        ]  # fmt: skip
        quarantine_files = [
            _parquet(Path(self.settings.quarantine_uri) / f"reason={reason}" / f"part-{batch:05d}-{i}.parquet", rows)
            for i, (reason, rows) in enumerate(sorted(spec.quarantined.items()))
        ]
        ledger = {
            "gold": {"observed": {"valid": {"rows": sum(spec.gold.values()) + spec.duplicates}}, "files": gold_files},
            "quarantine": {"observed": {}, "files": quarantine_files},
        }
        _log(self.checkpoint / "transform" / "offsets" / str(batch), [{"batchWatermarkMs": 0}])
        _log(self.checkpoint / "transform" / "commits" / str(batch), [{"nextBatchWatermarkMs": 0}])
        for query, part in ledger.items():
            entry = {"query": query, "batch": batch, "input_rows": input_rows, "ms": 1000, "replay": False, **part}
            path = self.checkpoint / "ledger" / query / f"{batch}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(entry))

    def run(self, spec: RunSpec) -> RunReport:
        plan = plan_run({"generate": False}, spec.name, self.settings, self.storage)
        before = {"gold": self.batch, "quarantine": self.batch}
        self._commit_batch(spec)
        verification = verify_gold(plan, before, self.storage)
        self.clock += timedelta(minutes=10)
        started = (self.clock - timedelta(seconds=spec.seconds)).isoformat()
        report = build_report(plan, verification, None, None, 1, started, self.clock)
        write_manifest(report, verification, self.storage)
        record_run(self.storage, plan.lake.runs, report)
        return report
