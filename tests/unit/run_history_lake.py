"""A local lake with a run history, built without Spark through the production code path.

Each run commits one micro-batch as the Spark job does (tests/lakes.py: real Iceberg commits of
Gold, the quarantine and the seen-id store, tagged with the batch and the run, and the query's
checkpoint), then PlanRun, VerifyGold and ReportStatus's functions run on it as in a real run:
`plan_run`, `verify_gold` (which writes the verification document), `build_report`,
`write_manifest` and `record_run`. No manifest or document is written by hand, so they cannot
drift from what the pipeline writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from iotpipe.lake.storage import LocalStorage
from iotpipe.lake.tables import sqlite_path
from iotpipe.local.catalog import LocalGlue
from iotpipe.run.history import record_run
from iotpipe.run.models import RunReport
from iotpipe.run.plan import plan_run
from iotpipe.run.report import build_report, write_manifest
from iotpipe.run.settings import Settings
from iotpipe.run.verify import verify_gold
from tests.lakes import JobCommits

ROOT = Path(__file__).resolve().parent.parent.parent


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
        self.commits = JobCommits(self.settings)
        self.glue = LocalGlue(sqlite_path(self.settings.catalog_uri))
        self.batch = -1
        self.clock = first_finish or datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)

    def run(self, spec: RunSpec) -> RunReport:
        plan = plan_run({"generate": False}, spec.name, self.settings, self.storage)
        self.batch += 1
        self.commits.commit_batch(self.batch, plan.run_id, gold=spec.gold, quarantined=spec.quarantined,
                                  duplicates=spec.duplicates)  # fmt: skip
        verification = verify_gold(plan, self.storage, self.glue, self.settings.catalog_database)
        self.clock += timedelta(minutes=10)
        started = (self.clock - timedelta(seconds=spec.seconds)).isoformat()
        report = build_report(plan, verification, None, None, 1, started, self.clock)
        write_manifest(report, verification, self.storage)
        record_run(self.storage, plan.lake.runs, report)
        return report
