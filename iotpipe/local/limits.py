"""The AWS limits the local run enforces, in one place, each as AWS documents it.

The local engine (iotpipe.local.runner, iotpipe.local.bindings) calls these checks where AWS
would apply them, so a definition or a handler that would break a limit on AWS breaks the
local run and the tests too:

- Step Functions: a state's input or output, and a service integration's result, at most
  256 KiB as UTF-8 JSON (`States.DataLimitExceeded`, which `States.ALL` does not catch);
  execution names of 1 to 80 characters, none of the characters AWS refuses (the rule itself
  is iotpipe.run.execution_names, which production code uses too); `States.ArrayRange` makes at
  most 1,000 items, and a larger range fails the state with `States.Runtime` (which no
  `States.ALL` catches, and a Pass state, where the definition builds its shard indexes, has
  no Catch at all).
- Lambda: a synchronous invocation's request and response at most 6 MB each; a function
  stops at its `Timeout` (`Sandbox.Timedout`) and at its `MemorySize`
  (`Runtime.OutOfMemory`), both read from template.yaml (Globals, then the function).
- SNS: a message at most 256 KiB; a subject of ASCII text, at most 100 characters, no line
  breaks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotpipe.run.execution_names import execution_name_problem

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "template.yaml"

MAX_STATE_PAYLOAD_BYTES = 262_144  # a state's input or output, UTF-8 JSON
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
# A terminal error: `States.ALL` in a Retry or Catch does not match it. (AWS says the same of
# States.Runtime, but moto 5.2.5 reports a failed Map iteration as States.Runtime where AWS
# reports the iteration's own error, so that one stays catchable locally.)
UNCATCHABLE_BY_STATES_ALL = frozenset({DATA_LIMIT_EXCEEDED})

# "The newly generated array can't contain more than 1000 items" (intrinsic functions, Step
# Functions developer guide). AWS reports an intrinsic that cannot be evaluated as States.Runtime.
MAX_ARRAY_RANGE_ITEMS = 1000
RUNTIME_ERROR = "States.Runtime"

MAX_LAMBDA_SYNC_PAYLOAD_BYTES = 6_291_456  # 6 MB, request and response of a RequestResponse invoke
LAMBDA_TIMEOUT_ERROR = "Sandbox.Timedout"
LAMBDA_OUT_OF_MEMORY_ERROR = "Runtime.OutOfMemory"

MAX_SNS_MESSAGE_BYTES = 262_144
MAX_SNS_SUBJECT_CHARS = 100


class LimitExceeded(ValueError):
    """A request or result AWS would refuse; `error` is the error name AWS reports."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def json_size(value: Any) -> int:
    """Bytes of `value` as Step Functions measures a payload: compact JSON, UTF-8 encoded."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8"))


def is_within_state_payload(value: Any) -> bool:
    return json_size(value) <= MAX_STATE_PAYLOAD_BYTES


def check_state_payload(value: Any, where: str) -> None:
    size = json_size(value)
    if size > MAX_STATE_PAYLOAD_BYTES:
        raise LimitExceeded(
            DATA_LIMIT_EXCEEDED,
            f"The state/task '{where}' returned a result with a size exceeding the maximum number of bytes "
            f"service limit ({size} > {MAX_STATE_PAYLOAD_BYTES} bytes).",
        )


def check_execution_name(name: str) -> None:
    problem = execution_name_problem(name)
    if problem:
        raise LimitExceeded("InvalidName", f"Invalid Name: '{name}': {problem}")


def array_range_size(first: int, last: int, step: int) -> int:
    """How many items `States.ArrayRange(first, last, step)` makes (both ends included)."""
    return len(range(first, last + (1 if step > 0 else -1), step)) if step else 0


def check_array_range(first: int, last: int, step: int) -> None:
    size = array_range_size(first, last, step)
    if size > MAX_ARRAY_RANGE_ITEMS:
        raise LimitExceeded(
            RUNTIME_ERROR,
            f"States.ArrayRange({first}, {last}, {step}) makes {size} items; the array can't contain more than "
            f"{MAX_ARRAY_RANGE_ITEMS} items",
        )


def check_lambda_payload(value: Any, what: str) -> None:
    size = json_size(value)
    if size > MAX_LAMBDA_SYNC_PAYLOAD_BYTES:
        error = "Lambda.RequestTooLargeException" if what == "request" else "Lambda.ResponseSizeTooLarge"
        raise LimitExceeded(error, f"{what} payload of {size} bytes exceeds {MAX_LAMBDA_SYNC_PAYLOAD_BYTES} bytes")


def check_sns_publish(subject: str | None, message: str) -> None:
    size = len(message.encode("utf-8"))
    if size > MAX_SNS_MESSAGE_BYTES:
        raise LimitExceeded("SNS.InvalidParameterException", f"Message too long: {size} bytes")
    if subject is None:
        return
    if not subject or len(subject) > MAX_SNS_SUBJECT_CHARS:
        raise LimitExceeded("SNS.InvalidParameterException", "Subject must be 1 to 100 characters")
    if not subject.isascii() or "\n" in subject or "\r" in subject or any(ord(c) < 32 for c in subject):
        raise LimitExceeded("SNS.InvalidParameterException", "Subject must be ASCII text without line breaks")


@dataclass(frozen=True)
class FunctionLimits:
    timeout_seconds: int
    memory_mb: int


def _template() -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(TEMPLATE.read_text(), Loader=Loader)


def function_limits(template: dict | None = None) -> dict[str, FunctionLimits]:
    """Timeout and MemorySize of each function, by its code folder (`plan_run`), from the template."""
    template = template or _template()
    defaults = template.get("Globals", {}).get("Function", {})
    limits = {}
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        name = properties["CodeUri"].rstrip("/").rsplit("/", 1)[-1]
        limits[name] = FunctionLimits(
            timeout_seconds=int(properties.get("Timeout", defaults.get("Timeout", 3))),
            memory_mb=int(properties.get("MemorySize", defaults.get("MemorySize", 128))),
        )
    return limits
