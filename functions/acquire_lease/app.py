"""AcquireLease: take the checkpoint lease before the Spark step, wait for it, or defer to its holder."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.run.lease import acquire_for_run
from iotpipe.run.models import RunPlan


class AcquireEvent(BaseModel):
    execution_id: str
    plan: RunPlan
    waits_left: int


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=AcquireEvent)
def lambda_handler(event: AcquireEvent, context: LambdaContext) -> dict:
    _, storage = runtime.current()
    decision = acquire_for_run(event.plan, event.waits_left, runtime.current_leases(), storage)
    logger.info("checkpoint lease", extra=decision.model_dump())
    return decision.model_dump()
