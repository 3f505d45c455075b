"""Deployment settings, parsed once from the environment into a typed model.

On AWS the template sets these variables on every Lambda; locally `iotpipe run` derives them
from the lake folder. Nothing below the handlers reads os.environ.
"""

from __future__ import annotations

from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from iotpipe.lake.horizon import DEFAULT_HORIZON, horizon_days
from iotpipe.lake.storage import join
from iotpipe.lake.tables import COMMITS_BEFORE_MAINTENANCE, local_catalog_uri
from iotpipe.run.models import EMR_ON_EC2, QualityPolicy, SparkRuntime
from iotpipe.run.quality import parse_reason_ratios


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    bronze_uri: str = Field(description="Bronze raw prefix, e.g. s3://bronze-bucket/raw")
    gold_uri: str = Field(description="Gold table prefix, e.g. s3://gold-bucket/iot_transformed")
    quarantine_uri: str
    checkpoint_uri: str
    runs_uri: str = Field(description="where run manifests are written")
    catalog_uri: str = Field(
        default="glue",
        description="the tables' Iceberg catalog: 'glue' (the Glue Data Catalog) or 'jdbc:sqlite:<file>'",
    )
    spark_job_uri: str = Field(description="the job's entry script (spark/job.py)")
    spark_py_files_uri: str = Field(description="zip of the `spark` package, for --py-files")
    spark_bootstrap_uri: str = Field(default="", description="EMR bootstrap action installing the job's modules")
    spark_wheels_uri: str = Field(default="", description="their wheelhouse (spark/requirements-emr.txt); empty: none")
    spark_runtime: SparkRuntime = Field(
        default=EMR_ON_EC2, description="emr-on-ec2 (an EMR step on a cluster) or emr-serverless (a job run)"
    )
    spark_deps_archive_uri: str = Field(
        default="", description="EMR Serverless: the job's pinned modules as a tar.gz (spark.archives); empty: none"
    )
    serverless_iceberg_jar: str = Field(
        default="/usr/share/aws/iceberg/lib/iceberg-spark3-runtime.jar",
        description="EMR Serverless: Iceberg's runtime as the release's image holds it (spark.jars)",
    )
    emr_instance_type: str = "m5.xlarge"
    emr_core_instance_count: int = 2
    subnet_id: str = ""
    aws_region: str = Field(
        default="", description="the stack's region (Lambda sets AWS_REGION); the job's AWS clients on EMR get it"
    )
    lease_store: str = Field(default="", description="dynamodb://<table>?region=<region>, or a folder for local runs")
    lease_key: str = "bronze-to-gold"
    lease_seconds: float = Field(
        default=300.0, description="each heartbeat of the Spark job extends the lease this long"
    )
    lease_initial_seconds: float = Field(
        default=1800.0, description="taken before generation: covers it, cluster start and the step's first heartbeat"
    )
    fault_injection_allowed: bool = Field(
        default=False, description="accept the execution input's fault_injection (tests and local runs only)"
    )
    lease_wait_seconds: int = 30
    lease_wait_rounds: int = 10
    arrival_clock_margin_seconds: float = Field(
        default=60.0, description="how far S3's clock (arrivals) and the Spark driver's (its start) may differ"
    )
    max_drain_rounds: int = 3
    state_machine_arn: str = ""
    stack_name: str = Field(default="", description="the cluster watchdog looks for clusters tagged with it")
    trigger_window_seconds: int = 60
    raw_prefix: str = "raw/"
    default_size: str = "256MiB"
    # At most 1,000: the definition makes the shard indexes with States.ArrayRange.
    default_shards: int = Field(default=4, ge=1, le=1000)
    default_max_concurrency: int = 4
    generator_timeout_seconds: int = Field(default=3600, ge=1, description="one generator shard's ECS task")
    cluster_timeout_seconds: int = Field(default=1800, ge=1, description="a transient cluster's start")
    spark_step_timeout_seconds: int = Field(default=4 * 3600, ge=1, description="one Spark step, then cancelled")
    terminate_timeout_seconds: int = Field(default=1800, ge=1, description="a transient cluster's termination")
    maintenance_timeout_seconds: int = Field(default=3600, ge=1, description="table maintenance's Spark step")
    maintenance_after_commits: int = Field(
        default=COMMITS_BEFORE_MAINTENANCE, ge=1,
        description="maintain a table once this many of its commits added files since its last maintenance",
    )  # fmt: skip
    max_files_per_trigger: int = 8
    catalog_database: str = Field(default="iotpipe", description="the catalog's database holding the tables")
    shuffle_partitions: int = 8
    dedup_horizon: str = Field(default=DEFAULT_HORIZON, description="how long an event_id is remembered (spark.dedup)")
    # The deployment's quality policy (template parameters Quality*); the execution input may override it.
    quality_max_quarantine_ratio: float = 0.05
    quality_max_quarantine_ratio_by_reason: str = Field(default="", description="e.g. malformed_json=0.01,...")
    quality_min_gold_rows: int = 1
    quality_max_duplicate_ratio: float = 0.05
    quality_on_breach: str = "warn"

    @field_validator("dedup_horizon")
    @classmethod
    def _a_horizon_the_job_reads(cls, value: str) -> str:
        horizon_days(value)
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        names = {name: name.upper() for name in cls.model_fields}
        return cls(**{field: env[var] for field, var in names.items() if var in env})

    @classmethod
    def for_local_lake(cls, lake: str, **overrides) -> Settings:
        """The buckets' prefixes, mirrored as folders under one lake directory."""
        values = dict(
            bronze_uri=join(lake, "bronze", "raw"),
            gold_uri=join(lake, "gold", "iot_transformed"),
            quarantine_uri=join(lake, "gold", "quarantine"),
            checkpoint_uri=join(lake, "artifacts", "checkpoints", "bronze-to-gold"),
            runs_uri=join(lake, "artifacts", "runs"),
            catalog_uri=local_catalog_uri(lake),
            lease_store=join(lake, "artifacts", "leases"),
            spark_job_uri="spark/job.py",
            spark_py_files_uri="",
            catalog_database="iotpipe",
            fault_injection_allowed=True,
        )
        values.update(overrides)
        return cls(**values)

    def emr_instances(self) -> dict:
        """The `Instances` block of a transient cluster (EMR CreateCluster / RunJobFlow)."""
        instances = {
            "InstanceGroups": [
                {
                    "Name": "Primary",
                    "InstanceRole": "MASTER",
                    "InstanceType": self.emr_instance_type,
                    "InstanceCount": 1,
                },
                {
                    "Name": "Core",
                    "InstanceRole": "CORE",
                    "InstanceType": self.emr_instance_type,
                    "InstanceCount": self.emr_core_instance_count,
                },
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        }
        if self.subnet_id:
            instances["Ec2SubnetId"] = self.subnet_id
        return instances

    def quality_policy(self) -> QualityPolicy:
        """The deployment's quality policy; a bad value fails here, in PlanRun, before any side effect."""
        return QualityPolicy(
            max_quarantine_ratio=self.quality_max_quarantine_ratio,
            max_quarantine_ratio_by_reason=parse_reason_ratios(self.quality_max_quarantine_ratio_by_reason),
            min_gold_rows=self.quality_min_gold_rows,
            max_duplicate_ratio=self.quality_max_duplicate_ratio,
            on_breach=self.quality_on_breach,
        )

    def to_env(self) -> dict[str, str]:
        return {name.upper(): str(value) for name, value in self.model_dump().items()}
