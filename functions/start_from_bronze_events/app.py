"""StartFromBronzeEvents: one decision per batch of S3 'Object Created' events (from SQS)."""

from __future__ import annotations

import time

from aws_lambda_powertools.utilities.typing import LambdaContext

from iotpipe.run import lambda_runtime as runtime
from iotpipe.run.lambda_runtime import logger, tracer
from iotpipe.run.trigger import arrival_time, classify_keys, decide, events_from_sqs, start_execution


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings, _ = runtime.current()
    records = event.get("Records", [])
    events = events_from_sqs(records)
    if len(events) != len(records):
        logger.warning("unreadable messages skipped", extra={"unreadable": len(records) - len(events)})
    keys, ignored = classify_keys(events, settings.raw_prefix)
    if ignored:  # the next run's job notes them for its report
        logger.info("objects that will not be read", extra={"ignored": len(ignored)})
    decision = decide(keys, runtime.current_leases(), settings.lease_key, settings.trigger_window_seconds,
                      arrived_at=arrival_time(events, time.time()))  # fmt: skip
    if decision.action == "start":
        arn = start_execution(runtime.stepfunctions_client(), settings.state_machine_arn, decision.name, keys)
        logger.info("run started", extra={"execution": arn, "objects": len(keys)})
    else:
        logger.info("no run started", extra={"action": decision.action, "objects": len(keys)})
    return {"action": decision.action, "objects": decision.keys, "name": decision.name}
