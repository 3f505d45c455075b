"""Per-run cost and time to first batch of the two Spark runtimes, on paper.

`python -m bench.cost_model` prints the table docs/design.md carries ("Choosing a Spark runtime:
cost and time on paper"); a test checks the two agree. Every input is a named constant below,
with where it comes from: AWS's list prices (us-east-1, on demand, x86) and this repository's
bench (the job's time per GiB and its fixed cost per run). Times AWS does not publish (a
cluster's start, an application's start, a job run's start) are assumptions, stated as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ---------------------------------------------------------------- what the job costs (bench)
# docs/benchmarks.md, `make bench-5g`: 5 GiB in 252 s and 1 GiB in 69 s on 2 cores, so about
# 46 s a GiB on 2 cores beyond a fixed cost: about 100 vCPU-seconds a GiB. Measured on the plain
# Parquet write path; issue 24 measures the Iceberg one.
VCPU_SECONDS_PER_GIB = 100.0
# Issue 24's fit of the bench (1 object 29 s, 8 objects 69 s): about 23 s a run before any work
# (JVM, session, catalog, the query's start and end).
JOB_FIXED_SECONDS = 23.0
# Table maintenance after a run that committed batches (spark/maintain.py), measured locally.
MAINTENANCE_SECONDS = 15.0

# ---------------------------------------------------------------- EMR on EC2 (template defaults)
EC2_INSTANCE_HOUR = 0.192  # m5.xlarge, Linux on demand
EMR_UPLIFT_HOUR = 0.048  # EMR's price on top, m5.xlarge
CLUSTER_INSTANCES = 3  # one primary and EmrCoreInstanceCount (2) core nodes
EXECUTOR_VCPUS_EC2 = 8  # the core nodes' 2 x 4 vCPU run the executors
# Assumed: a transient cluster of EMR 7 with one bootstrap action takes 6 to 8 minutes from
# CreateCluster to WAITING, and its instances are billed through termination (about a minute).
CLUSTER_START_SECONDS = 420.0
CLUSTER_TERMINATE_SECONDS = 60.0

# ---------------------------------------------------------------- EMR Serverless (template defaults)
VCPU_HOUR = 0.052624
GB_HOUR = 0.0057785
WORKER_VCPUS, WORKER_GB = 4, 16  # the default driver and executor size
EXECUTORS = 2  # the same 8 executor vCPUs as the cluster's, for a like-for-like figure
MINIMUM_WORKER_SECONDS = 60.0  # each worker is billed for at least a minute
# Assumed: an application started on submission (AutoStartConfiguration) is ready in about 90 s;
# a job run on a started application gets its driver and executors in about 30 s. A run every 15
# minutes finds the application started (it stops after 15 idle minutes); a daily run does not.
APPLICATION_START_SECONDS = 90.0
WORKERS_START_SECONDS = 30.0

VERIFY_AND_REPORT_SECONDS = 10.0  # VerifyGold and ReportStatus, Lambdas: the same on both runtimes


@dataclass(frozen=True)
class Scenario:
    gib_per_day: float
    runs_per_day: int

    @property
    def gib_per_run(self) -> float:
        return self.gib_per_day / self.runs_per_day

    @property
    def schedule(self) -> str:
        return "every 15 min" if self.runs_per_day == 96 else "once a day"


@dataclass(frozen=True)
class Estimate:
    runtime: str
    scenario: Scenario
    run_seconds: float
    run_cost: float
    first_batch_seconds: float

    @property
    def day_cost(self) -> float:
        return self.run_cost * self.scenario.runs_per_day


def work_seconds(gib: float, executor_vcpus: int) -> float:
    return gib * VCPU_SECONDS_PER_GIB / executor_vcpus


def emr_on_ec2(scenario: Scenario) -> Estimate:
    """A transient cluster per run: started, the job step, maintenance, terminated."""
    job = JOB_FIXED_SECONDS + work_seconds(scenario.gib_per_run, EXECUTOR_VCPUS_EC2)
    billed = CLUSTER_START_SECONDS + job + VERIFY_AND_REPORT_SECONDS + MAINTENANCE_SECONDS + CLUSTER_TERMINATE_SECONDS
    cost = CLUSTER_INSTANCES * (EC2_INSTANCE_HOUR + EMR_UPLIFT_HOUR) * billed / 3600
    return Estimate("EMR on EC2", scenario, billed, cost, CLUSTER_START_SECONDS + JOB_FIXED_SECONDS)


def emr_serverless(scenario: Scenario) -> Estimate:
    """Two job runs per run (the job, then maintenance) on the stack's application."""
    warm = scenario.runs_per_day >= 96
    start = (0.0 if warm else APPLICATION_START_SECONDS) + WORKERS_START_SECONDS
    workers = 1 + EXECUTORS
    worker_hour = WORKER_VCPUS * VCPU_HOUR + WORKER_GB * GB_HOUR
    job = WORKERS_START_SECONDS + JOB_FIXED_SECONDS + work_seconds(scenario.gib_per_run, EXECUTORS * WORKER_VCPUS)
    maintenance = WORKERS_START_SECONDS + MAINTENANCE_SECONDS
    billed = sum(max(MINIMUM_WORKER_SECONDS, seconds) for seconds in (job, maintenance))
    cost = workers * worker_hour * billed / 3600
    run = start - WORKERS_START_SECONDS + job + VERIFY_AND_REPORT_SECONDS + maintenance
    return Estimate("EMR Serverless", scenario, run, cost, start + JOB_FIXED_SECONDS)


SCENARIOS = [Scenario(gib, runs) for gib in (0.1, 5.0, 100.0) for runs in (96, 1)]


def table() -> str:
    lines = ["| GiB a day | runs | runtime | GiB a run | a run takes | a run costs | a day costs | first batch after |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for scenario in SCENARIOS:
        for estimate in (emr_on_ec2(scenario), emr_serverless(scenario)):
            lines.append(
                f"| {scenario.gib_per_day:g} | {scenario.schedule} | {estimate.runtime} | {scenario.gib_per_run:.3g} "
                f"| {_minutes(estimate.run_seconds)} | ${estimate.run_cost:.3f} | ${estimate.day_cost:.2f} "
                f"| {_minutes(estimate.first_batch_seconds)} |"
            )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{math.ceil(seconds / 6) / 10:.1f} min"


if __name__ == "__main__":
    print(table())
