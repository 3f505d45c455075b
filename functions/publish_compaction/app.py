"""PublishCompaction: Athena's side of Gold compaction, after its Spark step (or alone, in a
verified run that compacts nothing), under the run's lease.

Moves each compacted partition's manifests and catalog entry, deletes what an earlier compaction
replaced once its grace period is over (iotpipe.compaction), and reports the compaction."""

from __future__ import annotations

from typing import Optional

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe import lambda_runtime as runtime
from iotpipe.glue_registration import publish_compactions
from iotpipe.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.models import RunPlan


class PublishEvent(BaseModel):
    execution_id: str
    plan: RunPlan
    step_error: Optional[dict] = None
    step: Optional[dict] = None  # the compaction step's id; with no step_error either, no step ran

    def compaction_step_ran(self) -> bool:
        # A definition older than the `step` field always ran the step before this Lambda.
        return self.step is not None or self.step_error is not None or "step" not in self.model_fields_set


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=PublishEvent)
def lambda_handler(event: PublishEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    lease, leases = event.plan.lease, runtime.current_leases()
    report = publish_compactions(
        storage,
        event.plan,
        settings.catalog_database,
        runtime.glue_client,
        event.step_error,
        compacted=event.compaction_step_ran(),
        no_driver_writes=lambda: leases.hold_quiet(lease.key, event.plan.run_id, lease.initial_seconds),
    )
    logger.info("compaction", extra={"compaction": report})
    return report
