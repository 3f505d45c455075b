"""ReleaseLease: drain data that arrived during the run, then release the checkpoint lease."""

from __future__ import annotations

from typing import Optional

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.run.lease import release_for_run, release_once
from iotpipe.run.models import RunPlan


class ReleaseEvent(BaseModel):
    execution_id: str
    plan: RunPlan
    drain_round: int
    attempt_number: int
    attempt_run_id: Optional[str] = None
    verification: Optional[dict] = None
    error: Optional[dict] = None
    verify_error: Optional[dict] = None
    work: bool = True


def run_outcome(event: ReleaseEvent) -> str:
    if not event.work:
        return "nothing-to-do"
    verified = bool(event.verification and event.verification.get("ok"))
    return "succeeded" if verified and event.error is None and event.verify_error is None else "failed"


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=ReleaseEvent)
def lambda_handler(event: ReleaseEvent, context: LambdaContext) -> dict:
    settings, storage = runtime.current()
    leases = runtime.current_leases()
    decision = release_once(
        event.plan,
        event.drain_round,
        storage,
        lambda: release_for_run(
            event.plan,
            event.drain_round,
            run_outcome(event),
            event.attempt_number + 1,
            settings,
            storage,
            leases,
            event.attempt_run_id,
        ),  # fmt: skip
    )
    logger.info("checkpoint lease released or kept", extra=decision.model_dump(exclude={"next_attempt"}))
    return decision.model_dump()
