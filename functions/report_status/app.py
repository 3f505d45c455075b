"""ReportStatus: final status, counts and durations as the run manifest and as metrics."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe import lambda_runtime as runtime
from iotpipe.glue_registration import catalog_run
from iotpipe.lambda_runtime import CORRELATION_ID_PATH, logger, metrics, tracer
from iotpipe.models import RunPlan, StepAssessment, Verification
from iotpipe.reporting import build_report, collect_ignored, summary_line, write_manifest


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


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ReportEvent)
def lambda_handler(event: ReportEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    report = build_report(
        event.plan,
        event.verification,
        event.assessment,
        event.error,
        event.attempt_number,
        event.started_at,
        datetime.now(timezone.utc),
        deferred=event.deferred,
        drain_rounds=event.drain_rounds,
        ignored=None
        if event.deferred
        else collect_ignored(storage, event.plan.lake.runs, event.plan.run_id, event.plan.lake.checkpoint),
    )
    write_manifest(report, event.verification, storage)
    document = event.verification.document if event.verification else None
    catalog = catalog_run(runtime.glue_client, settings.catalog_database, storage, event.plan.lake, report, document)
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
    logger.info(summary_line(report))
    return {**report.model_dump(), "catalog": catalog, "message": summary_line(report)}
