"""Typed contracts between the state machine's states: execution input, run plan, verdicts, report."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from iotpipe.lake.cleaning_rules import REASON_CODES
from iotpipe.lake.tables import COMMITS_BEFORE_MAINTENANCE
from iotpipe.run.sizes import parse_size

# Fault injection for tests. The persistent ones (a bug, a poison batch, a lease store the job
# cannot reach) hit every attempt; the others hit the first attempt only, as a crash or a flaky
# failure would.
FAULTS = (
    "crash-before-gold:1",
    "crash-mid-batch:1",
    "crash-mid-batch:2",
    "crash-after-gold:1",
    "crash-inside-quarantine:1",
    "crash-after-quarantine:1",
    "crash-after-seen-ids:1",
    "fail-after-commit",
    "fail-at-start",
    "poison-batch:1",
    "lease-renewal-flaky",
    "lease-renewal-fails",
    "crash-inside-maintenance",
)
# Faults of the table maintenance step (spark/maintain.py), not of the job's.
MAINTENANCE_FAULTS = ("crash-inside-maintenance",)
PERSISTENT_FAULTS = ("fail-at-start", "poison-batch:1", "lease-renewal-fails")


# Where the Spark job runs, chosen at deploy time (template parameter SparkRuntime): transient EMR
# clusters with the job as an EMR step, or an EMR Serverless application with the job as a job run.
EMR_ON_EC2 = "emr-on-ec2"
EMR_SERVERLESS = "emr-serverless"
SparkRuntime = Literal["emr-on-ec2", "emr-serverless"]


class InvalidExecutionInput(ValueError):
    """The execution input cannot be run; raised by PlanRun before any side effect."""


Ratio = Annotated[float, Field(ge=0, le=1)]
BreachAction = Literal["warn", "fail"]


def _known_reasons(ratios: Optional[dict]) -> Optional[dict]:
    unknown = sorted(set(ratios or {}) - set(REASON_CODES))
    if unknown:
        raise ValueError(f"unknown reason code {', '.join(map(repr, unknown))}; known: {', '.join(REASON_CODES)}")
    return ratios


class QualityPolicy(BaseModel):
    """The thresholds a run's counts are held to (iotpipe.run.quality). Ratios are of the run's input
    records; a figure exactly at its threshold is no breach. A breach never stops data being written."""

    model_config = ConfigDict(extra="forbid")

    max_quarantine_ratio: Ratio = 0.05
    max_quarantine_ratio_by_reason: dict[str, Ratio] = Field(default_factory=dict, description="reason code -> ratio")
    min_gold_rows: int = Field(default=1, ge=0, description="for a run that had input")
    max_duplicate_ratio: Ratio = 0.05
    on_breach: BreachAction = Field(default="warn", description="warn: a warning status; fail: QUALITY_FAILED")

    _reasons_known = field_validator("max_quarantine_ratio_by_reason")(_known_reasons)


class QualityOverrides(BaseModel):
    """The execution input's `quality`: any of the policy's fields, over the deployment's defaults
    (a per-reason mapping adds to, or replaces ratios of, the deployment's). Types are strict, as
    JSON writes them: `true` is no ratio (it would be 1.0, which switches the rule off)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_quarantine_ratio: Optional[Ratio] = None
    max_quarantine_ratio_by_reason: Optional[dict[str, Ratio]] = None
    min_gold_rows: Optional[int] = Field(default=None, ge=0)
    max_duplicate_ratio: Optional[Ratio] = None
    on_breach: Optional[BreachAction] = None

    _reasons_known = field_validator("max_quarantine_ratio_by_reason")(_known_reasons)


class QualityBreach(BaseModel):
    rule: str = Field(description="the policy field, with the reason code for a per-reason ratio")
    figure: float
    threshold: float
    description: str


class ExecutionInput(BaseModel):
    """What a console user (or `iotpipe run`) may ask for. `{}` is valid: every field has a default.
    Types are strict, as JSON writes them: `"seed": true` is not 1, `"generate": "no"` is not false."""

    model_config = ConfigDict(extra="forbid", strict=True)

    generate: bool = True
    size: str = Field(default="", description="Bronze bytes to generate, e.g. 256MiB (default from settings)")
    shards: Optional[int] = Field(default=None, ge=1, le=1000)
    seed: Optional[int] = Field(default=None, ge=0)
    days: int = Field(default=7, ge=1, le=3650, description="the generated events span this many days")
    max_concurrency: Optional[int] = Field(default=None, ge=1, le=100)
    cluster_id: Optional[str] = Field(default=None, pattern=r"^j-[A-Z0-9]{1,64}$")
    max_resume_attempts: int = Field(default=2, ge=0, le=5)
    max_drain_rounds: Optional[int] = Field(default=None, ge=0, le=20)
    allow_large: bool = Field(default=False, description="generate more than MAX_GENERATE_BYTES on purpose")
    started_by: Literal["console", "trigger", "follow-up"] = Field(
        default="console", description="who asked: a run the trigger or a follow-up started may have nothing to do"
    )
    fault_injection: Optional[Literal[FAULTS]] = Field(default=None, description="tests only")
    quality: Optional[QualityOverrides] = Field(default=None, description="quality thresholds for this run")

    @field_validator("size")
    @classmethod
    def _size_parses(cls, value: str) -> str:
        if value:
            parse_size(value)
        return value


class S3ObjectEvent(BaseModel):
    """The EventBridge 'Object Created' event that starts a run on new Bronze data."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    source: Literal["aws.s3"]
    detail_type: Literal["Object Created"] = Field(alias="detail-type")
    detail: dict


class ShardPlan(BaseModel):
    """What every generator shard shares; the state machine builds each shard's command from it
    and the shard index, so the state carries the same few fields for 1 shard or 1000. PlanRun
    has already bounded the size, so the shards pass `--allow-large`."""

    shards: int
    last_index: int
    bronze: str
    size: str = Field(description="bytes, as the command line takes them")
    shard_count: str
    seed: str
    days: str = "7"

    def command(self, index: int) -> list[str]:
        """The generator command of shard `index`, as GenerateShards builds it with intrinsics."""
        return ["generate", "--out", self.bronze, "--size", self.size, "--shards", self.shard_count,
                "--shard-index", str(index), "--seed", self.seed, "--days", self.days, "--allow-large"]  # fmt: skip


class TaskTimeouts(BaseModel):
    """TimeoutSeconds of the long Task states (TimeoutSecondsPath reads them from the plan)."""

    generate_shard: int
    create_cluster: int
    spark_step: int
    terminate_cluster: int
    maintenance_step: int = 3600

    @computed_field
    @property
    def spark_job_minutes(self) -> int:
        """A job run's ExecutionTimeoutMinutes: EMR Serverless cancels it past the Task's timeout."""
        return -(-self.spark_step // 60)

    @computed_field
    @property
    def maintenance_job_minutes(self) -> int:
        return -(-self.maintenance_step // 60)


class Lake(BaseModel):
    bronze: str
    gold: str
    quarantine: str
    checkpoint: str
    runs: str


class SparkAttempt(BaseModel):
    number: int
    run_id: str
    step_args: list[str]
    job_driver: Optional[dict] = Field(None, description="EMR Serverless: the job run's JobDriver (SparkSubmit)")
    client_token: str = Field("", description="EMR Serverless: StartJobRun's idempotency token for this attempt")
    planned_before: dict[str, int]
    committed_before: dict[str, int] = Field(default_factory=dict, description="last commit per query before it ran")


class LeasePlan(BaseModel):
    store: str
    key: str
    seconds: float
    initial_seconds: float
    wait_seconds: int
    wait_rounds: int
    clock_margin_seconds: float = 60.0


class RunPlan(BaseModel):
    run_id: str
    execution_id: str = Field(
        "", description="the Step Functions execution: a report made for a run that died names it"
    )
    trigger: Literal["console", "s3-event", "trigger", "follow-up"]
    generate: bool
    generation: Optional[ShardPlan]
    max_concurrency: int
    lake: Lake
    cluster_id: Optional[str]
    transient_cluster: bool
    emr_instances: dict
    max_resume_attempts: int
    max_drain_rounds: int
    lease: LeasePlan
    fault_injection: Optional[str] = None
    attempt: SparkAttempt
    timeouts: TaskTimeouts
    maintenance_step_args: list[str] = Field(
        default_factory=list, description="the EMR step that maintains the tables after VerifyGold (spark/maintain.py)"
    )
    runtime: SparkRuntime = Field(EMR_ON_EC2, description="where the Spark job and maintenance run (SparkRuntime)")
    maintenance_job_driver: Optional[dict] = Field(None, description="EMR Serverless: maintenance's JobDriver")
    maintenance_client_token: str = ""
    maintenance_after_commits: int = Field(
        COMMITS_BEFORE_MAINTENANCE, ge=1,
        description="maintain a table once this many of its commits added files since its last maintenance",
    )  # fmt: skip
    follow_up_name: str = Field(description="the name of the execution this one hands over to, if it must")
    quality: QualityPolicy = Field(default_factory=QualityPolicy)


class LeaseDecision(BaseModel):
    acquired: bool
    waits_left: int
    deferred: bool
    work: bool = Field(True, description="False when the checkpoint already took every arrival (leasing.has_work)")
    work_reason: str = ""


class DrainDecision(BaseModel):
    next: Literal["drain", "follow_up", "finish"]
    released: str
    round: int
    unprocessed: int = Field(description="1 when data may be waiting (a pending mark after the attempt began), else 0")
    reason: str = ""
    next_attempt: Optional[SparkAttempt] = None


Verdict = Literal["complete", "partial", "failed"]


class StepAssessment(BaseModel):
    verdict: Verdict
    resume: bool
    reason: str
    failure: dict
    evidence: dict
    next_attempt: Optional[SparkAttempt] = None


# Every state payload is bounded by design (Step Functions refuses a state over 256 KiB with an
# uncatchable States.DataLimitExceeded): what grows with the data or the history goes to the
# verification document in S3; the state carries totals, a few examples and the document's URI.
MAX_EXAMPLES = 5
MAX_REASONS = 64


class SinkVerification(BaseModel):
    """One table, over the run's batches: totals only, plus at most MAX_EXAMPLES paths."""

    batches: int = Field(description="the run's batches")
    first_batch: Optional[int] = None
    last_batch: Optional[int] = None
    new_files: int = Field(description="files the run's commits added that are there, with their size")
    new_rows: int = Field(description="rows of those files")
    committed_rows: int = Field(0, description="rows the commits added, whether their files are there or not")
    partitions: int = Field(description="partitions the run's files went to")
    missing_files: int
    size_mismatches: int
    examples: dict[str, list[str]] = Field(default_factory=dict, description="a few paths per problem kind")


class Verification(BaseModel):
    ok: bool = Field(description="every batch of the run has its commit in every table")
    gold: SinkVerification
    quarantine: SinkVerification
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)
    counts: dict = Field(description="batches, input rows (per table) and duplicates, as the commits recorded them")
    reconciliation: dict = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list, description="a few batches whose commits are missing")
    document: Optional[str] = Field(None, description="URI of the full verification (per batch, per partition)")
    maintenance: dict = Field(
        default_factory=lambda: {"due": False, "reason": "not assessed"},
        description="whether the tables have work for maintenance (small files to merge, snapshots to expire), and why",
    )


RunStatus = Literal[
    "SUCCEEDED",
    "SUCCEEDED_WITH_STEP_ERROR",
    "UNRECONCILED",
    "DEFERRED",
    "NOTHING_TO_DO",
    "FAILED",
    "SUCCEEDED_WITH_QUALITY_WARNING",
    "QUALITY_FAILED",
    "INTERRUPTED",
]


class RunReport(BaseModel):
    run_id: str
    status: RunStatus
    trigger: str
    records: dict
    quarantined_by_reason: dict[str, int]
    gold_partitions: int
    reconciliation: dict = Field(default_factory=dict)
    ignored_objects: dict = Field(default_factory=dict)
    attempts: int
    drain_rounds: int = 0
    step_error: Optional[dict] = None
    error: Optional[dict] = None
    spark_logs: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: str
    seconds: Optional[float] = None
    manifest: str
    quality_breaches: list[QualityBreach] = Field(default_factory=list)
    quality_policy: Optional[QualityPolicy] = None
    maintenance: Optional[dict] = Field(None, description="what table maintenance did after the run (MaintainTables)")
    reported_by: Optional[str] = Field(None, description="for a run that died before its report: the run that made it")
    spark: Optional[dict] = Field(
        None, description="where the Spark job ran: the runtime, its cluster or application and job run, a link"
    )
