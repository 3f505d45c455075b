"""WatchClusters: every few minutes, the age of this stack's oldest transient EMR cluster as a
metric (0 when there is none), for the alarm on a cluster alive longer than its bound."""

from __future__ import annotations

from datetime import datetime, timezone

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.clusters import transient_clusters
from iotpipe.run.lambda_runtime import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings, _ = runtime.current()
    clusters = transient_clusters(runtime.emr_client(), settings.stack_name, datetime.now(timezone.utc))
    oldest = clusters[0].minutes if clusters else 0.0
    metrics.add_metric(name="OldestTransientClusterMinutes", unit=MetricUnit.NoUnit, value=oldest)
    metrics.add_metric(name="TransientClusters", unit=MetricUnit.Count, value=len(clusters))
    for cluster in clusters:
        logger.info("transient cluster alive", extra=cluster.__dict__)
    return {"clusters": [cluster.__dict__ for cluster in clusters], "oldest_minutes": oldest}
