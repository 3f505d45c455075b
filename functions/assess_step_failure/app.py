"""AssessStepFailure: complete (a false FAILED), partial (resume) or failed, from evidence."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.assess import assess_step_failure
from iotpipe.run.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.run.models import RunPlan, SparkAttempt


class AssessEvent(BaseModel):
    execution_id: str
    plan: RunPlan
    attempt: SparkAttempt
    step_error: object = None


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=AssessEvent)
def lambda_handler(event: AssessEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    assessment = assess_step_failure(
        event.step_error, event.plan, event.attempt, settings, storage, runtime.glue_client()
    )
    logger.info("step failure assessed", extra={"verdict": assessment.verdict, "reason": assessment.reason})
    return assessment.model_dump()
