"""VerifyGold: the run's batches as the tables committed them; every file there, every record accounted for.

Runs on the failure path too: a failed run still reports what it committed."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.run.models import RunPlan
from iotpipe.run.verify import verify_gold


class VerifyEvent(BaseModel):
    execution_id: str
    plan: RunPlan


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=VerifyEvent)
def lambda_handler(event: VerifyEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    verification = verify_gold(event.plan, storage, runtime.glue_client(), settings.catalog_database)
    logger.info("verified", extra={"reconciliation": verification.reconciliation})
    return verification.model_dump(mode="json")
