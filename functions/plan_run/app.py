"""PlanRun: validate the execution input and plan the run (shards, Spark step)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.run.plan import plan_run


class PlanRunEvent(BaseModel):
    execution_id: str
    execution_name: str
    input: object = None


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=PlanRunEvent)
def lambda_handler(event: PlanRunEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    return plan_run(event.input, event.execution_name, settings, storage, event.execution_id).model_dump()
