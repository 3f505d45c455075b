"""The API behind each service integration of the state machine, checked against botocore's models.

A Task state's `Parameters` become an API request; a wrong name or type there is refused by the
service on AWS. This module maps each integration to its API (Step Functions' PascalCase names
for camelCase APIs, and the integrations that rename a field, such as addStep's `ClusterId` and
`Step` for AddJobFlowSteps' `JobFlowId` and `Steps`) and validates the rendered parameters with
`botocore.validate.ParamValidator`. It also knows the documented response of each integration, so
a `ResultSelector` or `OutputPath` that reads a field the response does not have is found before
AWS finds it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

# Fields the integration result carries beside the API's own (the SDK's response metadata).
_SDK_METADATA = {"SdkHttpMetadata": None, "SdkResponseMetadata": None}
FREE_FORM = None  # a response field whose content the API does not define (a function's payload)


def _lower_first(value: Any) -> Any:
    """Step Functions' PascalCase parameter names, as the camelCase API spells them."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: _lower_first(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lower_first(item) for item in value]
    return value


def _json_field(name: str, parameters: dict) -> dict:
    """A JSON object Step Functions serialises into a string (or blob) field for the API."""
    if name in parameters and not isinstance(parameters[name], (str, bytes)):
        parameters = {**parameters, name: json.dumps(parameters[name], default=str)}
    return parameters


def _add_step(parameters: dict) -> dict:
    rest = {k: v for k, v in parameters.items() if k not in ("ClusterId", "Step")}
    return {**rest, "JobFlowId": parameters.get("ClusterId"), "Steps": [parameters.get("Step")]}


def _terminate(parameters: dict) -> dict:
    rest = {k: v for k, v in parameters.items() if k != "ClusterId"}
    return {**rest, "JobFlowIds": [parameters.get("ClusterId")]}


@dataclass(frozen=True)
class Integration:
    service: str  # botocore's service name
    operation: str
    to_request: Callable[[dict], dict]
    response: Callable[[], Any]  # a botocore Shape, or a dict of field -> nested dict / FREE_FORM


def _output_shape(service: str, operation: str):
    return lambda: _model(service).operation_model(operation).output_shape


def _ecs_task():
    """ecs:runTask.sync returns the stopped task as DescribeTasks describes it, PascalCase."""
    return _model("ecs").shape_for("Task")


INTEGRATIONS: dict[tuple[str, str], Integration] = {
    ("lambda", "invoke"): Integration(
        "lambda",
        "Invoke",
        lambda p: _json_field("Payload", p),
        lambda: {
            "Payload": FREE_FORM,
            "StatusCode": None,
            "ExecutedVersion": None,
            "FunctionError": None,
            "LogResult": None,
            **_SDK_METADATA,
        },  # fmt: skip
    ),
    ("ecs", "runTask"): Integration("ecs", "RunTask", _lower_first, _ecs_task),
    ("elasticmapreduce", "createCluster"): Integration(
        "emr", "RunJobFlow", dict, lambda: {"ClusterId": None, "ClusterArn": None}
    ),
    ("elasticmapreduce", "addStep"): Integration("emr", "AddJobFlowSteps", _add_step, lambda: {"StepId": None}),
    ("elasticmapreduce", "terminateCluster"): Integration("emr", "TerminateJobFlows", _terminate, lambda: {}),
    # The job run's ids; the state keeps the whole result (ResultPath, no ResultSelector), so a
    # .sync result that carries more (the job run as GetJobRun describes it) is kept too.
    ("emr-serverless", "startJobRun"): Integration(
        "emr-serverless", "StartJobRun", _lower_first, _output_shape("emr-serverless", "StartJobRun")
    ),
    ("sns", "publish"): Integration(
        "sns", "Publish", dict, lambda: {"MessageId": None, "SequenceNumber": None, **_SDK_METADATA}
    ),
    ("states", "startExecution"): Integration(
        "stepfunctions",
        "StartExecution",
        lambda p: _lower_first(_json_field("Input", p)),
        lambda: {"ExecutionArn": None, "StartDate": None, **_SDK_METADATA},
    ),
}


@functools.cache
def _model(service: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


class InvalidParameters(ValueError):
    pass


def integration_for(resource_arn: str) -> tuple[tuple[str, str], Integration]:
    """`arn:aws:states:::elasticmapreduce:addStep.sync` -> its (service, action) and API."""
    service, action = resource_arn.split(":::", 1)[1].split(":", 1)
    key = (service, action.split(".", 1)[0])
    if key not in INTEGRATIONS:
        raise KeyError(f"no API model for the integration {resource_arn}")
    return key, INTEGRATIONS[key]


def check_parameters(service: str, action: str, parameters: dict) -> None:
    """Raise InvalidParameters if the rendered `parameters` are not a valid request for the API."""
    from botocore.validate import ParamValidator

    integration = INTEGRATIONS[(service, action)]
    request = integration.to_request(parameters)
    shape = _model(integration.service).operation_model(integration.operation).input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        raise InvalidParameters(
            f"{service}:{action} parameters are not a valid {integration.operation} request: "
            + report.generate_report()
        )


_PATH_PART = re.compile(r"\.([A-Za-z0-9_]+)|\[\d+\]|\[\*\]")


def _path_parts(path: str) -> list[str | None]:
    """`$.Containers[0].ExitCode` -> ['Containers', None, 'ExitCode'] (None: an array index)."""
    if not path.startswith("$"):
        raise InvalidParameters(f"not a JSONPath: {path}")
    parts, position = [], 1
    for match in _PATH_PART.finditer(path, 1):
        if match.start() != position:
            raise InvalidParameters(f"unsupported JSONPath: {path}")
        parts.append(match.group(1))
        position = match.end()
    if position != len(path):
        raise InvalidParameters(f"unsupported JSONPath: {path}")
    return parts


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def check_response_path(service: str, action: str, path: str) -> None:
    """Raise InvalidParameters if `path` reads a field the integration's response does not have."""
    node = INTEGRATIONS[(service, action)].response()
    for part in _path_parts(path):
        if node is FREE_FORM:
            return
        if part is None:  # an array index
            if getattr(node, "type_name", None) != "list":
                raise InvalidParameters(f"{path}: indexes something that is not a list in the {action} response")
            node = node.member
            continue
        if isinstance(node, dict):
            if part not in node:
                raise InvalidParameters(f"{path}: the {service}:{action} response has no field {part!r}")
            node = node[part]
        elif getattr(node, "type_name", None) == "structure":
            members = {_pascal(name): member for name, member in node.members.items()}
            if part not in members:
                raise InvalidParameters(f"{path}: the {service}:{action} response has no field {part!r}")
            node = members[part]
        else:
            raise InvalidParameters(f"{path}: {part!r} is read from a {getattr(node, 'type_name', 'value')}")


def selector_paths(selector: Any) -> list[str]:
    """The JSONPaths a ResultSelector reads (values of `.$` keys that are paths, not intrinsics)."""
    paths = []
    if isinstance(selector, dict):
        for key, value in selector.items():
            if key.endswith(".$") and isinstance(value, str) and value.startswith("$") and not value.startswith("$$"):
                paths.append(value)
            else:
                paths.extend(selector_paths(value))
    return paths


def bound_violations(service: str, operation: str, request: dict) -> list[str]:
    """What AWS's server refuses and botocore's client does not check: a list with more members
    than the model's `max` (BatchCreatePartition's 100 partitions), a string longer than its `max`."""
    shape = _model(service).operation_model(operation).input_shape
    found: list[str] = []
    _walk_bounds(shape, request, operation, found)
    return found


def _walk_bounds(shape, value: Any, path: str, found: list[str]) -> None:
    limit = shape.metadata.get("max")
    if shape.type_name == "list" and isinstance(value, list):
        if limit is not None and len(value) > limit:
            found.append(f"{path}: {len(value)} members, at most {limit}")
        for index, item in enumerate(value):
            _walk_bounds(shape.member, item, f"{path}[{index}]", found)
    elif shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _walk_bounds(member, value[name], f"{path}.{name}", found)
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            _walk_bounds(shape.value, item, f"{path}[{key!r}]", found)
    elif shape.type_name == "string" and isinstance(value, str) and limit is not None and len(value) > limit:
        found.append(f"{path}: {len(value)} characters, at most {limit}")


class BoundsCheckedClient:
    """A boto3 client that refuses, as the service would (ValidationException), a request over the
    model's bounds, before sending it (moto does not check them)."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.meta, self.exceptions = inner.meta, inner.exceptions

    def __getattr__(self, name: str):
        method = getattr(self._inner, name)
        operation = self._inner.meta.method_to_api_mapping.get(name)
        if operation is None:
            return method

        def call(**kwargs):
            from botocore.exceptions import ClientError

            problems = bound_violations(self._inner.meta.service_model.service_name, operation, kwargs)
            if problems:
                message = f"{len(problems)} validation error(s) detected: " + "; ".join(problems[:10])
                raise ClientError({"Error": {"Code": "ValidationException", "Message": message}}, operation)
            return method(**kwargs)

        return call
