"""The Spark job's command-line arguments, shared by the planner (EMR step) and the local runner."""

from __future__ import annotations

from dataclasses import dataclass, field

from iotpipe.lake.horizon import DEFAULT_HORIZON


@dataclass(frozen=True)
class SparkJobArgs:
    """The job's arguments; `to_argv` is also what an EMR step passes after the script."""

    bronze: str
    gold: str
    quarantine: str
    checkpoint: str
    run_id: str
    catalog: str = "glue"
    catalog_database: str = "iotpipe"
    execution: str = ""
    max_files_per_trigger: int = 8
    shuffle_partitions: int = 4
    dedup_horizon: str = DEFAULT_HORIZON
    fault: str | None = None
    lease: str | None = None
    lease_key: str = "bronze-to-gold"
    lease_holder: str | None = None
    lease_seconds: float = 300.0
    region: str | None = None
    extra: list[str] = field(default_factory=list)

    def to_argv(self) -> list[str]:
        argv = [
            "--bronze",
            self.bronze,
            "--gold",
            self.gold,
            "--quarantine",
            self.quarantine,
            "--checkpoint",
            self.checkpoint,
            "--run-id",
            self.run_id,
            "--catalog",
            self.catalog,
            "--catalog-database",
            self.catalog_database,
            "--max-files-per-trigger",
            str(self.max_files_per_trigger),
            "--shuffle-partitions",
            str(self.shuffle_partitions),
            "--dedup-horizon",
            self.dedup_horizon,
        ]
        if self.lease:
            argv += ["--lease", self.lease, "--lease-key", self.lease_key, "--lease-seconds", str(self.lease_seconds)]
        # The run each batch belongs to (its last commit's tag, spark/job.py), with or without a lease.
        if self.lease_holder:
            argv += ["--lease-holder", self.lease_holder]
        if self.region:
            argv += ["--region", self.region]
        if self.execution:
            argv += ["--execution", self.execution]
        if self.fault:
            argv += ["--fault", self.fault]
        return argv + list(self.extra)
