"""Rules the template must keep, read from template.yaml (and, where SAM adds resources, from its
translation): what no deploy here can show, because there is no AWS account to deploy to."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from iotpipe.local import iam
from iotpipe.local.iam.stack import local_world, parse_template
from iotpipe.run.settings import Settings

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


# Properties that give a resource its physical name, unique in the account and region (or in a
# scope shared by stacks, such as the default schedule group). Names scoped inside a resource of
# the stack (a Glue table in its database, an inline policy in its role) are not listed.
NAME_PROPERTIES = {"Name", "FunctionName", "TableName", "BucketName", "QueueName", "TopicName", "LogGroupName",
                   "DashboardName", "AlarmName", "RoleName", "ClusterName", "RepositoryName", "StateMachineName",
                   "ScheduleName", "LayerName", "GroupName", "InstanceProfileName", "ManagedPolicyName",
                   "AliasName", "SecurityConfigurationName", "WorkGroupName"}  # fmt: skip


def explicit_names(resources: dict) -> dict[str, object]:
    """`Logical.Property` -> value of every explicit physical name (a Ref or GetAtt to a resource
    of the stack names that resource, it is no name of its own)."""
    names = {}
    for logical, resource in resources.items():
        properties = resource.get("Properties") or {}
        found = {key: properties[key] for key in NAME_PROPERTIES if key in properties}
        if isinstance(properties.get("DatabaseInput"), dict) and "Name" in properties["DatabaseInput"]:
            found["DatabaseInput.Name"] = properties["DatabaseInput"]["Name"]
        for key, value in found.items():
            reference = isinstance(value, dict) and (value.get("Ref") in resources or next(iter(value)) == "Fn::GetAtt")
            if not reference:
                names[f"{logical}.{key}"] = value
    return names


def derives_from_stack_name(value: object, parameters: dict) -> bool:
    """The value contains the stack name; an `Fn::If` branch may instead be an optional override
    (a parameter whose default is empty, which the other branch replaces by a derived name)."""
    if isinstance(value, list):
        return any(derives_from_stack_name(v, parameters) for v in value)
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (function, argument), = value.items()  # fmt: skip
    if function == "Ref":
        return argument == "AWS::StackName"
    if function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        return "${AWS::StackName}" in text or any(derives_from_stack_name(v, parameters) for v in variables.values())
    if function == "Fn::If":
        optional = [
            b for b in argument[1:] if isinstance(b, dict) and parameters.get(b.get("Ref"), {}).get("Default") == ""
        ]
        derived = [b for b in argument[1:] if derives_from_stack_name(b, parameters)]
        return bool(derived) and len(optional) + len(derived) == len(argument) - 1
    return derives_from_stack_name(argument, parameters)


@pytest.mark.parametrize("which", ["template", "translated"])
def test_every_explicit_physical_name_derives_from_the_stack_name(which, template, stack):
    """Two stacks in one account and region must not collide: every name the template gives (and
    every name SAM gives in its translation) contains the stack name; the others are generated."""
    resources = template["Resources"] if which == "template" else stack.resources
    names = explicit_names(resources)
    assert "CatalogDatabase.DatabaseInput.Name" in names and "QueryWorkGroup.Name" in names
    fixed = {k: v for k, v in names.items() if not derives_from_stack_name(v, template["Parameters"])}
    assert fixed == {}


@pytest.mark.parametrize(("stack_name", "database"), [("iotpipe", "iotpipe"), ("iot-pipe-test-2", "iot_pipe_test_2")])
def test_the_default_catalog_database_name_is_a_valid_glue_name_from_the_stack_name(template, stack_name, database):
    assert template["Parameters"]["CatalogDatabaseName"]["Default"] == ""
    named = iam.load_stack(world=dataclasses.replace(local_world(), stack_name=stack_name))
    name = named.physical_name("CatalogDatabase")
    assert name == database and re.fullmatch(r"[a-z][a-z0-9_]{0,254}", name)


# Resource types that hold data: a stack deletion, or an update that replaces one, must not take
# the lake, the lease, the keys that decrypt what is kept, or the logs with it. The queues hold
# only new-object events for data that stays in Bronze (the next run reads it), so they go.
STATEFUL_TYPES = {"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::KMS::Key", "AWS::Logs::LogGroup"}
LEAVING: set = set()


def test_every_stateful_resource_is_retained_on_delete_and_on_replacement(template):
    stateful = {k: r for k, r in template["Resources"].items() if r["Type"] in STATEFUL_TYPES and k not in LEAVING}
    assert {"BronzeBucket", "GoldBucket", "ArtifactsBucket", "AccessLogsBucket", "LeaseTable", "LogsKey"} <= set(
        stateful
    )
    not_retained = {
        k: (r.get("DeletionPolicy"), r.get("UpdateReplacePolicy"))
        for k, r in stateful.items()
        if (r.get("DeletionPolicy"), r.get("UpdateReplacePolicy")) != ("Retain", "Retain")
    }
    assert not_retained == {}


def test_the_trigger_is_bounded_by_its_event_sources_maximum_concurrency_not_reserved_concurrency(stack):
    """Lambda's SQS poller ignores reserved concurrency: the extra batches are throttled, return
    after the visibility timeout and count toward the dead-letter queue. The event source mapping's
    ScalingConfig (2 to 1,000) holds the poller back instead."""
    mappings = [r for r in stack.resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    queues = {k for k, r in stack.resources.items() if r["Type"] == "AWS::SQS::Queue"}
    from_sqs = [m["Properties"] for m in mappings if m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] in queues]
    assert len(from_sqs) == 1
    trigger = from_sqs[0]["FunctionName"]["Ref"]
    assert "ReservedConcurrentExecutions" not in stack.resources[trigger]["Properties"]
    assert 2 <= from_sqs[0].get("ScalingConfig", {}).get("MaximumConcurrency", 0) <= 1000


def test_cloudformation_refuses_a_subnet_outside_the_vpc(stack):
    """A Rules assertion: CloudFormation checks it before any change, with the subnet's VpcId."""
    parameters = stack.template["Parameters"]
    subnets = [name for name, p in parameters.items() if p["Type"] == "AWS::EC2::Subnet::Id"]
    assert subnets == ["SubnetId"] and parameters["VpcId"]["Type"] == "AWS::EC2::VPC::Id"
    asserts = [a["Assert"] for rule in stack.template.get("Rules", {}).values() for a in rule["Assertions"]]
    every_subnet = {"Fn::EachMemberEquals": [{"Fn::ValueOfAll": ["AWS::EC2::Subnet::Id", "VpcId"]}, {"Ref": "VpcId"}]}
    this_subnet = {"Fn::Equals": [{"Fn::ValueOf": ["SubnetId", "VpcId"]}, {"Ref": "VpcId"}]}
    assert every_subnet in asserts or this_subnet in asserts


def test_the_readme_states_the_prerequisites_the_template_cannot_check(template):
    """Interface endpoints' private DNS needs both VPC DNS attributes; the vCPU figures follow the
    template's defaults (m5.xlarge has 4 vCPUs) and the plan's default generator concurrency."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`enableDnsSupport`" in readme and "`enableDnsHostnames`" in readme
    parameters, resources = template["Parameters"], template["Resources"]
    assert parameters["EmrInstanceType"]["Default"] == "m5.xlarge"
    cluster_vcpus = (1 + int(parameters["EmrCoreInstanceCount"]["Default"])) * 4
    assert f"{cluster_vcpus} vCPUs of EC2's *Running On-Demand Standard" in readme
    task_vcpus = int(resources["GeneratorTaskDefinition"]["Properties"]["Cpu"]) // 1024
    concurrency = Settings.model_fields["default_max_concurrency"].default
    assert f"Fargate tasks of {task_vcpus} vCPUs, `max_concurrency` at a time (default {concurrency})" in readme
    assert f"{task_vcpus * concurrency} vCPUs of *Fargate On-Demand vCPU resource count*" in readme


def test_the_default_emr_release_ships_the_iceberg_the_local_runs_and_tests_use(template):
    """A lake must behave on EMR (both runtimes take EmrReleaseLabel) as it does here: EMR's release
    history lists emr-7.14.0 with Iceberg 1.10.1-amzn-1 (emr-7.9.0 had 1.7.1)."""
    from iotpipe.local.jars import EMR_RELEASE, ICEBERG_VERSION

    assert (EMR_RELEASE, ICEBERG_VERSION) == ("emr-7.14.0", "1.10.1")
    assert template["Parameters"]["EmrReleaseLabel"]["Default"] == EMR_RELEASE
