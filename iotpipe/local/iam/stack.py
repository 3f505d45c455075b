"""The deployed stack's IAM, derived from template.yaml itself, in a fixed local world.

The template is translated by `aws-sam-translator` (the one SAM CLI uses), so SAM policy
templates such as `S3ReadPolicy` or `LambdaInvokePolicy` expand exactly as they do on deploy.
The translator pins a pydantic other than this project's, so it runs in an environment of its
own (`.venv-sam-translator`, which `make install` makes with the translator alone; or SAM CLI's
`.venv-sam`, which has the same translator), one subprocess per batch of templates.
Intrinsics (Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If, pseudo parameters) are then resolved
against local physical names: the ones `iotpipe run` uses for the state machine's
DefinitionSubstitutions (a test checks they agree).

AWS managed policies (AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess,
AWSLambdaSQSQueueExecutionRole, AmazonEMRServicePolicy_v2, AmazonECSTaskExecutionRolePolicy)
are listed but not expanded: they grant logs, X-Ray, SQS polling and EMR's own provisioning,
none of which the rehearsal checks, and they never grant the lake, the lease table or the
state machine's integrations.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from iotpipe.local.iam.policy import Decision, Request, UnsupportedPolicy, evaluate
from iotpipe.local.jars import EMR_RELEASE
from iotpipe.local.world import ACCOUNT, FUNCTIONS, REGION

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
STACK_NAME = "iotpipe"
# The local function names are those of `iotpipe run` (world.FUNCTIONS); the trigger is not in the definition.
TRIGGER_FUNCTION = ("StartFromBronzeEventsFunction", "start_from_bronze_events")

_TRANSLATE = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicyLookup:
    def load(self):
        raise RuntimeError("the template names a managed policy by name: use its ARN")

out = []
for text in json.load(sys.stdin):
    template = yaml_parse(text)
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str):
                properties[key] = "s3://local-artifacts/" + key
    out.append(transform(template, {}, NoManagedPolicyLookup()))
json.dump(out, sys.stdout)
"""


class TranslatorUnavailable(RuntimeError):
    pass


def sam_python() -> str:
    """The interpreter of an environment with aws-sam-translator: the translator's own, or SAM CLI's."""
    explicit = os.environ.get("IOTPIPE_SAM_PYTHON")
    if explicit:
        return explicit
    sam = os.environ.get("IOTPIPE_SAM")
    candidates = [Path(sam).parent / "python"] if sam else []
    candidates += [ROOT / ".venv-sam-translator" / "bin" / "python", ROOT / ".venv-sam" / "bin" / "python"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise TranslatorUnavailable(
        "aws-sam-translator is needed to read the template's IAM: "
        "run `make install` (it installs it in .venv-sam-translator)"
    )


def translate(*template_texts: str) -> list[dict]:
    """CloudFormation for each SAM template text, translated as `sam deploy` would."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    done = subprocess.run(
        [sam_python(), "-c", _TRANSLATE],
        input=json.dumps(list(template_texts)),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise TranslatorUnavailable(f"aws-sam-translator failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


@dataclass(frozen=True)
class World:
    """Where the local run pretends the stack is deployed: account, region and physical names."""

    region: str
    account: str
    partition: str = "aws"
    stack_name: str = STACK_NAME
    names: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)


def local_world(spark_runtime: str = "emr-on-ec2") -> World:
    names = {key.removesuffix("Arn"): name for key, name in FUNCTIONS.items()}
    names[TRIGGER_FUNCTION[0]] = TRIGGER_FUNCTION[1]
    names.update(
        {
            "BronzeBucket": "iotpipe-local-bronze",
            "GoldBucket": "iotpipe-local-gold",
            "ArtifactsBucket": "iotpipe-local-artifacts",
            "LeaseTable": "iotpipe-local-leases",
            "GeneratorCluster": "iotpipe-local",
            "GeneratorTaskDefinition": "iotpipe-generator",
            "GeneratorSecurityGroup": "sg-local",
            "EmrServiceRole": "iotpipe-emr-service-role",
            "EmrInstanceProfile": "iotpipe-emr-instance-profile",
            "ReportTopic": "iotpipe-reports",
            "SparkApplication": "00localsparkapp",  # an EMR Serverless application id: [0-9a-z]+
        }
    )
    parameters = {"SubnetId": "subnet-local", "VpcId": "vpc-local", "EmrReleaseLabel": EMR_RELEASE,
                  "GeneratorImageUri": "iotpipe-generator:local", "SparkRuntime": spark_runtime}  # fmt: skip
    return World(region=REGION, account=ACCOUNT, names=names, parameters=parameters)


NO_VALUE = object()  # Ref AWS::NoValue: the list item or property is left out
_NAME_PROPERTIES = ("StateMachineName", "FunctionName", "TableName", "BucketName", "RoleName", "TopicName",
                    "ClusterName", "QueueName", "LogGroupName", "InstanceProfileName", "Name")  # fmt: skip
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Stack:
    """The translated template, resolved in a world: who each principal is and what it may do."""

    def __init__(self, template: dict, world: World) -> None:
        self.template, self.world = template, world
        self._conditions: dict[str, bool] = {}
        # What CloudFormation creates in this world: a resource whose Condition is false is not there.
        self.resources: dict[str, dict] = {
            logical: resource for logical, resource in template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }  # fmt: skip

    # ------------------------------------------------------------ names and intrinsics
    def _arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        w = self.world
        return f"arn:{w.partition}:{service}:{w.region if region else ''}:{w.account if account else ''}:{resource}"

    def physical_name(self, logical: str) -> str:
        if logical in self.world.names:
            return self.world.names[logical]
        properties = self.resources[logical].get("Properties") or {}
        for nested in ("DatabaseInput", "TableInput"):  # Glue names its resources inside their input
            properties = properties.get(nested, properties)
        for key in _NAME_PROPERTIES:
            if isinstance(properties.get(key), (str, dict)):
                return str(self.resolve(properties[key]))
        return f"{self.world.stack_name}-{logical}"

    def ref(self, name: str) -> Any:
        w = self.world
        pseudo = {
            "AWS::Partition": w.partition,
            "AWS::Region": w.region,
            "AWS::AccountId": w.account,
            "AWS::StackName": w.stack_name,
            "AWS::StackId": self._arn("cloudformation", f"stack/{w.stack_name}/local"),
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        parameters = self.template.get("Parameters", {})
        if name in parameters:
            value = w.parameters.get(name, parameters[name].get("Default"))
            if value is None:
                raise KeyError(f"no local value for parameter {name}")
            return str(value)
        if name not in self.resources:
            raise KeyError(f"Ref to unknown {name}")
        kind, physical = self.resources[name]["Type"], self.physical_name(name)
        by_arn = {
            "AWS::ECS::TaskDefinition": lambda: self._arn("ecs", f"task-definition/{physical}:1"),
            "AWS::SNS::Topic": lambda: self._arn("sns", physical),
            "AWS::StepFunctions::StateMachine": lambda: self._arn("states", f"stateMachine:{physical}"),
            "AWS::Lambda::LayerVersion": lambda: self._arn("lambda", f"layer:{physical}:1"),
            "AWS::SQS::Queue": lambda: f"https://sqs.{self.world.region}.amazonaws.com/{self.world.account}/{physical}",
        }
        return by_arn[kind]() if kind in by_arn else physical

    def get_att(self, logical: str, attribute: str) -> str:
        kind, physical = self.resources[logical]["Type"], self.physical_name(logical)
        table = {
            ("AWS::S3::Bucket", "Arn"): lambda: f"arn:{self.world.partition}:s3:::{physical}",
            ("AWS::DynamoDB::Table", "Arn"): lambda: self._arn("dynamodb", f"table/{physical}"),
            ("AWS::Lambda::Function", "Arn"): lambda: self._arn("lambda", f"function:{physical}"),
            ("AWS::IAM::Role", "Arn"): lambda: self._arn("iam", f"role/{physical}", region=False),
            ("AWS::IAM::InstanceProfile", "Arn"): lambda: self._arn("iam", f"instance-profile/{physical}", False),
            ("AWS::ECS::Cluster", "Arn"): lambda: self._arn("ecs", f"cluster/{physical}"),
            ("AWS::EC2::SecurityGroup", "GroupId"): lambda: physical,
            ("AWS::SNS::Topic", "TopicName"): lambda: physical,
            ("AWS::SNS::Topic", "TopicArn"): lambda: self.ref(logical),
            ("AWS::StepFunctions::StateMachine", "Name"): lambda: physical,
            ("AWS::StepFunctions::StateMachine", "Arn"): lambda: self.ref(logical),
            ("AWS::Logs::LogGroup", "Arn"): lambda: self._arn("logs", f"log-group:{physical}:*"),
            ("AWS::SQS::Queue", "Arn"): lambda: self._arn("sqs", physical),
            ("AWS::SQS::Queue", "QueueName"): lambda: physical,
            ("AWS::Events::Rule", "Arn"): lambda: self._arn("events", f"rule/{physical}"),
            ("AWS::KMS::Key", "Arn"): lambda: self._arn("kms", f"key/{physical}"),
            ("AWS::CloudWatch::Alarm", "Arn"): lambda: self._arn("cloudwatch", f"alarm:{physical}"),
            ("AWS::EMRServerless::Application", "Arn"): lambda: self._arn(
                "emr-serverless", f"/applications/{physical}"
            ),
            ("AWS::EMRServerless::Application", "ApplicationId"): lambda: physical,
        }
        if (kind, attribute) not in table:
            raise KeyError(f"Fn::GetAtt {logical}.{attribute} ({kind}) has no local value")
        return table[(kind, attribute)]()

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        """The value with every intrinsic function replaced by its local result."""
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, argument = next(iter(value.items()))
            if key == "Ref":
                return NO_VALUE if argument == "AWS::NoValue" else self.ref(argument)
            if key == "Fn::GetAtt":
                logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(v) for v in self.resolve(items))
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::If":
                name, if_true, if_false = argument
                return self.resolve(if_true if self.condition(name) else if_false)
            if key == "Fn::Equals":
                left, right = self.resolve(argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in argument)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                raise UnsupportedPolicy(f"intrinsic {key} is not resolved locally")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    # ------------------------------------------------------------ principals and policies
    def role_of(self, logical: str) -> str:
        """The role a principal acts with: a function's or state machine's role, or a role itself."""
        resource = self.resources[logical]
        if resource["Type"] == "AWS::IAM::Role":
            return logical
        properties = resource.get("Properties") or {}
        role = properties.get("Role") or properties.get("RoleArn")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            target = role["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else target.split(".", 1)[0]
        raise KeyError(f"{logical} has no role in this template")

    def identity_statements(self, logical: str) -> list[dict]:
        role = self.role_of(logical)
        documents = [p["PolicyDocument"] for p in self.resources[role].get("Properties", {}).get("Policies") or []]
        for resource in self.resources.values():
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                roles = self.resolve((resource.get("Properties") or {}).get("Roles") or [])
                if self.ref(role) in roles:
                    documents.append(resource["Properties"]["PolicyDocument"])
        resolved = self.resolve(documents)
        return [s for document in resolved for s in _as_list(document.get("Statement"))]

    def managed_policies(self, logical: str) -> list[str]:
        role = self.role_of(logical)
        return [
            str(a) for a in self.resolve((self.resources[role].get("Properties") or {}).get("ManagedPolicyArns") or [])
        ]

    @functools.cached_property
    def _bucket_denies(self) -> dict[str, list[dict]]:
        """Deny statements of bucket policies that apply to every principal (`Principal: "*"`)."""
        denies: dict[str, list[dict]] = {}
        for resource in self.resources.values():
            if resource["Type"] == "AWS::S3::BucketPolicy":
                properties = self.resolve(resource["Properties"])
                for statement in _as_list(properties["PolicyDocument"].get("Statement")):
                    if statement.get("Effect") == "Deny" and statement.get("Principal") == "*":
                        plain = {k: v for k, v in statement.items() if k != "Principal"}
                        denies.setdefault(properties["Bucket"], []).append(plain)
        return denies

    def decide(self, logical: str, request: Request) -> Decision:
        statements = list(self.identity_statements(logical))
        if request.resource.startswith(f"arn:{self.world.partition}:s3:::"):
            bucket = request.resource.split(":::", 1)[1].split("/", 1)[0]
            statements += self._bucket_denies.get(bucket, [])
        return evaluate(statements, request)

    def definition_substitutions(self) -> dict[str, str]:
        machine = next(r for r in self.resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine")
        return {k: str(v) for k, v in self.resolve(machine["Properties"].get("DefinitionSubstitutions", {})).items()}

    def logical_id_of_function(self, function_name: str) -> str:
        for logical, name in self.world.names.items():
            if name == function_name and self.resources.get(logical, {}).get("Type") == "AWS::Lambda::Function":
                return logical
        raise KeyError(f"no function named {function_name} in the template")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_template(text: str) -> dict:
    """template.yaml as data, CloudFormation short forms (!Ref, !Sub, ...) as their long forms."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", construct)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


@functools.lru_cache(maxsize=8)
def _translated(text: str) -> str:
    return json.dumps(translate(text)[0])


def load_stack(template_text: str | None = None, world: World | None = None) -> Stack:
    """The stack of `template_text` (template.yaml by default) in the local world."""
    text = TEMPLATE.read_text() if template_text is None else template_text
    return Stack(json.loads(_translated(text)), world or local_world())


def load_stacks(template_texts: list[str], world: World | None = None) -> list[Stack]:
    """Several templates in one translation (the mutation tests translate dozens)."""
    world = world or local_world()
    return [Stack(template, world) for template in translate(*template_texts)]
