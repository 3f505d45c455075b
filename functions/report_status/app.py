"""ReportStatus: final status, counts and durations as the run manifest and as metrics, and the
run's page and the history page (the last runs) beside the manifest."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Optional

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe.lake.tables import maintenance_outcome_uri
from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.history import record_run
from iotpipe.run.lambda_runtime import CORRELATION_ID_PATH, logger, metrics, tracer
from iotpipe.run.models import RunPlan, RunReport, StepAssessment, Verification
from iotpipe.run.report import (
    build_report,
    collect_ignored,
    needs_attention,
    run_error,
    spark_batch_seconds,
    spark_identifiers,
    summary_line,
    write_manifest,
    write_run_rows,
    written_report,
)
from iotpipe.run.report_page import write_history_page, write_run_page
from iotpipe.run.unreported import report_dead_runs


class ReportEvent(BaseModel):
    execution_id: str
    started_at: Optional[str] = None
    plan: RunPlan
    attempt_number: int = 1
    verification: Optional[Verification] = None
    assessment: Optional[StepAssessment] = None
    error: Optional[dict] = None
    deferred: bool = False
    drain_rounds: int = 0
    work: bool = True
    verify_error: Optional[dict] = None
    drain: dict = {}
    maintenance: Optional[dict] = None
    cluster: Optional[dict] = None
    job_run: Optional[dict] = None


def publish(event: ReportEvent, report: RunReport, settings, storage) -> list[str]:
    """What follows the manifest, each step safe to repeat: the run's rows, the history entry, the
    reports of runs that died before theirs, the run's page and the history page. Returns those runs."""
    write_run_rows(storage, event.plan.lake.runs, report.model_dump())
    record_run(storage, event.plan.lake.runs, report)
    recovered = report_dead_runs(event.plan, storage, runtime.glue_client(), settings.catalog_database,
                                 runtime.stepfunctions_client(), datetime.now(timezone.utc))  # fmt: skip
    verification = event.verification.model_dump(mode="json") if event.verification else None
    write_run_page(storage, event.plan.lake.runs, report, event.execution_id, verification)
    write_history_page(storage, event.plan.lake.runs)
    return recovered


def maintenance_outcome(event: ReportEvent, storage) -> Optional[dict]:
    """What table maintenance did after this round (its outcome file), its step's error, or why
    VerifyGold found no work for it."""
    if not event.maintenance:
        verification = event.verification
        # Only where ShouldMaintain's other conditions held: a verified, reconciled round with batches.
        if (
            verification is not None
            and verification.ok
            and verification.reconciliation.get("reconciles")
            and verification.counts.get("batches", 0) > 0
            and not verification.maintenance.get("due", False)
        ):
            return {"not_due": verification.maintenance.get("reason", "")}
        return None
    if "Error" in event.maintenance:
        return {"error": event.maintenance.get("Error"), "cause": str(event.maintenance.get("Cause", ""))[:1000]}
    uri = maintenance_outcome_uri(event.plan.lake.runs, event.plan.run_id)
    return json.loads(storage.read_bytes(uri)) if storage.stat(uri) is not None else None


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ReportEvent)
def lambda_handler(event: ReportEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    already = written_report(event.plan, storage)
    if already is not None:  # a retry after the work was done: finish it, count nothing again
        logger.info("report already written by an earlier invocation: no metric counted twice")
        recovered = publish(event, already, settings, storage)
        return {**already.model_dump(), "reported_for": recovered, "message": summary_line(already, event.execution_id)}
    report = build_report(
        event.plan,
        event.verification,
        event.assessment,
        run_error(event.error, event.verify_error, event.drain),
        event.attempt_number,
        event.started_at,
        datetime.now(timezone.utc),
        deferred=event.deferred,
        nothing_to_do=not event.work,
        drain_rounds=event.drain_rounds,
        ignored=None
        if event.deferred
        else collect_ignored(storage, event.plan.lake.runs, event.plan.run_id, event.plan.lake.checkpoint),
    )
    report.maintenance = maintenance_outcome(event, storage)
    report.spark = spark_identifiers(event.plan, event.execution_id, event.cluster, event.job_run, event.assessment)
    write_manifest(report, event.verification, storage)  # from here on a retry counts nothing again
    recovered = publish(event, report, settings, storage)
    metrics.add_metric(name="InterruptedRunsReported", unit=MetricUnit.Count, value=len(recovered))
    for name, value in report.records.items():
        metrics.add_metric(name=f"{name.capitalize()}Records", unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="RunFailed", unit=MetricUnit.Count, value=int(report.status == "FAILED"))
    metrics.add_metric(name="RunUnreconciled", unit=MetricUnit.Count, value=int(report.status == "UNRECONCILED"))
    metrics.add_metric(name="IgnoredObjects", unit=MetricUnit.Count, value=int(report.ignored_objects.get("count", 0)))
    metrics.add_metric(
        name="StepErrorWithCompleteOutput",
        unit=MetricUnit.Count,
        value=int(report.status == "SUCCEEDED_WITH_STEP_ERROR"),
    )
    metrics.add_metric(name="QualityBreach", unit=MetricUnit.Count, value=len(report.quality_breaches))
    # Operate (alarms and dashboard, template.yaml): whether an operator should look, and how long it took.
    metrics.add_metric(name="RunNotSucceeded", unit=MetricUnit.Count, value=int(needs_attention(report.status)))
    if report.seconds is not None:
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Seconds, value=report.seconds)
    spark_seconds = spark_batch_seconds(event.verification)
    if spark_seconds is not None:
        metrics.add_metric(name="SparkBatchDuration", unit=MetricUnit.Seconds, value=spark_seconds)
    for reason, count in report.quarantined_by_reason.items() if not runtime.metrics_disabled() else ():
        with single_metric(
            name="QuarantinedRecordsByReason",
            unit=MetricUnit.Count,
            value=count,
            namespace=runtime.METRICS_NAMESPACE,
            default_dimensions={"service": runtime.SERVICE},
        ) as metric:
            metric.add_dimension(name="reason", value=reason)
    message = summary_line(report, event.execution_id)
    logger.info(message)
    return {**report.model_dump(), "reported_for": recovered, "message": message}
