"""Start runs from new Bronze data without storms, overlaps or data left behind.

On AWS, S3 'Object Created' events reach an SQS queue; the queue feeds one Lambda with a
batching window (the trigger's delay), so a burst of hundreds of objects becomes one
invocation, and that invocation makes one decision:

- no object the job will read (outside the raw prefix, hidden names, other formats, by the one
  rule in iotpipe.lake.bronze): start nothing (the next run's job notes them for its report);
- otherwise first record the newest arrival on the lease, so a run started for data the
  checkpoint already took (a redelivered event) ends without a cluster;
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

from iotpipe.lake.bronze import ignored_reason, is_own_object
from iotpipe.run.execution_names import bounded_execution_name
from iotpipe.run.lease_store import LeaseStore

RUN_INPUT = {"generate": False, "started_by": "trigger"}
# The longest an SQS event source lets Lambda collect a batch (MaximumBatchingWindowInSeconds;
# the template's TriggerDelaySeconds, which sets it, allows no more). `iotpipe watch` caps its
# wait for quiet with it, so a steady stream of uploads still starts runs, as on AWS.
MAX_BATCHING_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class TriggerDecision:
    action: str  # "ignore" | "pending" | "start"
    keys: int
    name: str | None = None


def _created_keys(events: Iterable[dict]) -> list[str]:
    return [
        event.get("detail", {}).get("object", {}).get("key", "")
        for event in events
        if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created"
    ]


def classify_keys(events: Iterable[dict], raw_prefix: str = "raw/") -> tuple[list[str], dict[str, str]]:
    """Keys under the raw prefix the job will read, and the others there with why they are ignored.

    EventBridge carries the key as it is (not URL-encoded, unlike direct S3 notifications).
    """
    keys, ignored = [], {}
    for key in _created_keys(events):
        if not key.startswith(raw_prefix):
            continue
        relative = key[len(raw_prefix) :]
        reason = ignored_reason(relative)
        if reason is None:
            keys.append(key)
        elif not is_own_object(relative):
            ignored[key] = reason
    return keys, ignored


def arrival_time(events: Iterable[dict], default: float) -> float:
    """The newest event time of the batch (when S3 created the objects), or `default`."""
    times = []
    for event in events:
        try:
            times.append(datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp())
        except (KeyError, TypeError, ValueError):
            continue
    return max(times, default=default)


def execution_name(now: float, window_seconds: int, prefix: str = "bronze") -> str:
    """One name per trigger window: a repeated start in the same window is the same execution."""
    window = int(now // window_seconds * window_seconds)
    return f"{prefix}-{datetime.fromtimestamp(window, timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


def decide(keys: list[str], leases: LeaseStore, lease_key: str, window_seconds: int, now: float | None = None,
           prefix: str = "bronze", arrived_at: float | None = None) -> TriggerDecision:  # fmt: skip
    now = time.time() if now is None else now
    if not keys:
        return TriggerDecision("ignore", 0)
    leases.note_arrival(lease_key, now if arrived_at is None else arrived_at)
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
