"""The local bindings: version guard, Lambda error shape, and the definition's placeholders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from iotpipe.local.bindings import Bindings, TaskError, UnsupportedMotoVersion, check_moto_version
from iotpipe.local.runner import DEFINITION, PLACEHOLDER, local_substitutions, substitute

ROOT = Path(__file__).resolve().parent.parent.parent


def bindings(**handlers) -> Bindings:
    return Bindings(
        lambda_handlers=handlers,
        run_generator=lambda c: 0,
        run_spark_step=lambda a, s: (True, {}),
        publish=lambda s, m: None,
    )


def test_the_engine_refuses_a_moto_version_it_was_not_written_for():
    check_moto_version()
    with pytest.raises(UnsupportedMotoVersion, match="5.2.5"):
        check_moto_version("5.3.0")


def test_a_lambda_result_comes_back_as_lambda_invoke_does():
    local = bindings(plan=lambda event, context: {"echo": event["x"], "fn": context.function_name})
    result = local.invoke_lambda({"FunctionName": "arn:aws:lambda:us-east-1:1:function:plan", "Payload": {"x": 1}})
    assert result["StatusCode"] == 200 and result["Payload"] == {"echo": 1, "fn": "plan"}


def test_a_lambda_exception_becomes_its_error_type_with_a_lambda_shaped_cause():
    def handler(event, context):
        raise KeyError("missing")

    with pytest.raises(TaskError) as caught:
        bindings(plan=handler).invoke_lambda({"FunctionName": "plan", "Payload": {}})
    assert caught.value.error == "KeyError"
    assert json.loads(caught.value.cause)["errorType"] == "KeyError"


def test_a_failed_container_fails_the_ecs_task():
    local = Bindings(
        lambda_handlers={}, run_generator=lambda c: 3, run_spark_step=lambda a, s: (True, {}), publish=lambda s, m: None
    )
    with pytest.raises(TaskError, match="ExitCode"):
        local.run_ecs_task({"Overrides": {"ContainerOverrides": [{"Name": "generator", "Command": ["generate"]}]}})


def test_a_failed_step_reports_emr_shaped_failure_details():
    local = Bindings(
        lambda_handlers={},
        run_generator=lambda c: 0,
        run_spark_step=lambda a, s: (False, {"Reason": "Unknown Error."}),
        publish=lambda s, m: None,
    )
    with pytest.raises(TaskError) as caught:
        local.add_step({"ClusterId": "j-1", "Step": {"Name": "x", "HadoopJarStep": {"Args": ["spark-submit"]}}})
    assert json.loads(caught.value.cause)["Step"]["Status"]["FailureDetails"] == {"Reason": "Unknown Error."}


def _template_substitutions() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    return set(template["Resources"]["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"])


def test_every_placeholder_of_the_definition_has_a_substitution_in_the_template_and_locally():
    placeholders = set(PLACEHOLDER.findall(DEFINITION.read_text()))
    assert placeholders
    assert placeholders - _template_substitutions() == set()
    assert placeholders - set(local_substitutions()) == set()
    assert not re.search(r"\$\{", substitute(DEFINITION.read_text(), local_substitutions()))


def test_a_missing_substitution_is_refused():
    with pytest.raises(KeyError, match="Nope"):
        substitute('{"a": "${Nope}"}', {})
