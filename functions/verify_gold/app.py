"""VerifyGold: committed files exist with their sizes; orphan files moved aside once provably dead; counts.

Runs on the failure path too: a failed run still reports what it committed."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from iotpipe import lambda_runtime as runtime
from iotpipe.lambda_runtime import CORRELATION_ID_PATH, logger, tracer
from iotpipe.models import RunPlan
from iotpipe.verification import verify_gold


class VerifyEvent(BaseModel):
    execution_id: str
    plan: RunPlan
    committed_before: dict[str, int]


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler
@event_parser(model=VerifyEvent)
def lambda_handler(event: VerifyEvent, context: LambdaContext) -> dict:
    _, storage = runtime.current()
    lease, leases = event.plan.lease, runtime.current_leases()
    verification = verify_gold(
        event.plan,
        event.committed_before,
        storage,
        may_move=lambda: leases.hold_quiet(lease.key, event.plan.run_id, lease.initial_seconds),
    )
    return verification.model_dump(mode="json")
