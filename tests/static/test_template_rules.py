"""Rules the template must keep, read from template.yaml (and, where SAM adds resources, from its
translation): what no deploy here can show, because there is no AWS account to deploy to."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotpipe.local import iam
from iotpipe.local.iam.stack import parse_template

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def template() -> dict:
    return parse_template((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def stack():
    """The template as SAM translates it, resolved for a local stack (its name is `iotpipe`)."""
    return iam.load_stack()


def test_the_state_machines_log_group_is_a_vended_logs_group(template, stack):
    """Step Functions delivers logs as a vended log source: under /aws/vendedlogs/ CloudWatch Logs
    needs no resource-policy entry per group (a busy account's policy is capped at 5,120 characters)."""
    destinations = template["Resources"]["PipelineStateMachine"]["Properties"]["Logging"]["Destinations"]
    groups = [d["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0] for d in destinations]
    assert groups == ["PipelineLogGroup"]
    name = stack.resolve(template["Resources"]["PipelineLogGroup"]["Properties"].get("LogGroupName"))
    assert isinstance(name, str) and name.startswith("/aws/vendedlogs/states/")
