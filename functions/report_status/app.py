"""ReportStatus: final status, counts and durations as the run manifest and as metrics, and the
run history page (the last runs) beside the manifest."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe import lambda_runtime as runtime
from iotpipe.glue_registration import catalog_run
from iotpipe.lambda_runtime import CORRELATION_ID_PATH, logger, metrics, tracer
from iotpipe.models import RunPlan, RunReport, StepAssessment, Verification
from iotpipe.report_page import write_history_page
from iotpipe.reporting import (
    build_report,
    collect_ignored,
    needs_attention,
    run_error,
    spark_batch_seconds,
    summary_line,
    write_manifest,
    written_report,
)
from iotpipe.run_history import record_run


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
    compaction: Optional[dict] = None


def publish(event: ReportEvent, report: RunReport, settings, storage) -> dict:
    """What follows the manifest, each step safe to repeat: catalog rows and partitions, the history
    entry and its page."""
    document = event.verification.document if event.verification else None
    catalog = catalog_run(runtime.glue_client, settings.catalog_database, storage, event.plan.lake, report, document)
    record_run(storage, event.plan.lake.runs, report)
    write_history_page(storage, event.plan.lake.runs, report.run_id)
    return catalog


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ReportEvent)
def lambda_handler(event: ReportEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    already = written_report(event.plan, storage)
    if already is not None:  # a retry after the work was done: finish it, count nothing again
        logger.info("report already written by an earlier invocation: no metric counted twice")
        catalog = publish(event, already, settings, storage)
        return {**already.model_dump(), "catalog": catalog, "message": summary_line(already, event.execution_id)}
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
    publication = (event.compaction or {}).get("publication") or {}
    report.compaction = publication.get("outcome") or (publication if "Error" in publication else None)
    write_manifest(report, event.verification, storage)  # from here on a retry counts nothing again
    catalog = publish(event, report, settings, storage)
    metrics.add_metric(name="CatalogErrors", unit=MetricUnit.Count, value=catalog.get("errors", 0))
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
    return {**report.model_dump(), "catalog": catalog, "message": message}
