"""Start runs from new Bronze data without storms, overlaps or data left behind.

On AWS, S3 'Object Created' events reach an SQS queue; the queue feeds one Lambda with a
batching window (the trigger's delay), so a burst of hundreds of objects becomes one
invocation, and that invocation makes one decision:

- no object under the raw prefix (manifests, hidden in-progress files): ignore;
- a run holds the checkpoint lease: mark it pending, so the holder drains before releasing
  (this is also what happens to the pipeline's own generator uploads during a run);
- otherwise: start one execution, named after the time window, so a redelivered batch maps
  to the same name and Step Functions starts it once.

Locally `iotpipe watch` polls the Bronze folder and makes the same decision.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from iotpipe.lease import LeaseStore
from iotpipe.local.limits import bounded_execution_name

RUN_INPUT = {"generate": False}


@dataclass(frozen=True)
class TriggerDecision:
    action: str  # "ignore" | "pending" | "start"
    keys: int
    name: str | None = None


def bronze_keys(events: Iterable[dict], raw_prefix: str = "raw/") -> list[str]:
    """Object keys of 'Object Created' events under the raw prefix, hidden and manifest files excluded."""
    keys = []
    for event in events:
        if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
            continue
        key = event.get("detail", {}).get("object", {}).get("key", "")
        name = key.rsplit("/", 1)[-1]
        if key.startswith(raw_prefix) and "/_" not in key and not name.startswith((".", "_")):
            keys.append(key)
    return keys


def execution_name(now: float, window_seconds: int, prefix: str = "bronze") -> str:
    """One name per trigger window: a repeated start in the same window is the same execution."""
    window = int(now // window_seconds * window_seconds)
    return f"{prefix}-{datetime.fromtimestamp(window, timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


def decide(keys: list[str], leases: LeaseStore, lease_key: str, window_seconds: int, now: float | None = None,
           prefix: str = "bronze") -> TriggerDecision:  # fmt: skip
    now = time.time() if now is None else now
    if not keys:
        return TriggerDecision("ignore", 0)
    if leases.mark_pending(lease_key, now):
        return TriggerDecision("pending", len(keys))
    return TriggerDecision("start", len(keys), execution_name(now, window_seconds, prefix))


def start_execution(client, state_machine_arn: str, name: str, keys: list[str]) -> str:
    """Start the run; if that window's execution already finished, start one named after the batch."""
    try:
        return client.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(RUN_INPUT))[
            "executionArn"
        ]
    except client.exceptions.ExecutionAlreadyExists:
        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:12]
        return client.start_execution(
            stateMachineArn=state_machine_arn, name=bounded_execution_name(name, digest), input=json.dumps(RUN_INPUT)
        )["executionArn"]


def events_from_sqs(records: Iterable[dict]) -> list[dict]:
    """EventBridge events carried as SQS message bodies; unreadable bodies are skipped, not fatal."""
    events = []
    for record in records:
        try:
            events.append(json.loads(record["body"]))
        except (KeyError, TypeError, ValueError):
            continue
    return events
