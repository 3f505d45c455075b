"""The rehearsal's IAM enforcement: each AWS call of the local run, checked as AWS would check it.

Lambda handlers reach AWS through the storage, lease store and Step Functions client of
`iotpipe.run.lambda_runtime`; here they are wrapped so that every operation is first mapped to the
IAM actions and ARNs the real client's API calls need (S3Storage, DynamoDBLeaseStore, boto3)
and decided against the role of the function being invoked (`acting_as`). The state machine's
service integrations are checked against the state machine role before they run. A denied call
raises what AWS raises (a botocore ClientError `AccessDenied` / `AccessDeniedException`), so it
fails the Task as it would on AWS.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from botocore.exceptions import ClientError

from iotpipe.lake.storage import Writer
from iotpipe.local.iam.policy import Request
from iotpipe.local.iam.stack import ROOT, Stack

_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("iotpipe_iam_principal", default=None)

LAKE_BUCKETS = {"bronze": "BronzeBucket", "gold": "GoldBucket", "artifacts": "ArtifactsBucket"}


class NoPrincipal(RuntimeError):
    """An AWS call was made outside any function invocation: nobody to authorize it as."""


@contextlib.contextmanager
def acting_as(logical_id: str) -> Iterator[None]:
    """Within this block AWS calls are made with the role of template resource `logical_id`."""
    token = _principal.set(logical_id)
    try:
        yield
    finally:
        _principal.reset(token)


def current_principal() -> str:
    principal = _principal.get()
    if principal is None:
        raise NoPrincipal("an AWS call outside any Lambda invocation: wrap it in iam.acting_as(<logical id>)")
    return principal


def access_denied(stack: Stack, principal: str, request: Request, code: str, operation: str) -> ClientError:
    role = stack.physical_name(stack.role_of(principal))
    message = (
        f"User: arn:{stack.world.partition}:sts::{stack.world.account}:assumed-role/{role}/{principal} "
        f"is not authorized to perform: {request.action} on resource: {request.resource} "
        f"because no identity-based policy allows the {request.action} action"
    )
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@dataclass
class Authorizer:
    """Decides requests for the current principal and raises AWS's error on a denial."""

    stack: Stack
    decisions: list[tuple[str, Request, bool]] = field(default_factory=list)

    def require(self, requests: list[Request], operation: str, code: str, principal: str | None = None) -> None:
        principal = principal or current_principal()
        for request in requests:
            decision = self.stack.decide(principal, request)
            self.decisions.append((principal, request, decision.allowed))
            if not decision.allowed:
                raise access_denied(self.stack, principal, request, code, operation)


# ---------------------------------------------------------------- S3 (the lake folders)
@dataclass(frozen=True)
class LakeMap:
    """Local folders as the stack's buckets: <lake>/bronze|gold|artifacts/<key>, and the
    repository's spark/ folder as the artifacts bucket's spark/ prefix (the job's code)."""

    stack: Stack
    lake: str

    def locate(self, uri: str) -> tuple[str, str]:
        """(bucket name, key) of a local path."""
        raw = uri[len("file://") :] if uri.startswith("file://") else uri
        trailing = "/" if raw.endswith("/") else ""
        path = Path(os.path.realpath(raw))
        for root, prefix in (
            (Path(os.path.realpath(self.lake)), None),
            (Path(os.path.realpath(ROOT / "spark")), "spark"),
        ):
            with contextlib.suppress(ValueError):
                parts = path.relative_to(root).parts
                if prefix:
                    return self.stack.physical_name("ArtifactsBucket"), "/".join((prefix, *parts)) + trailing
                if parts and parts[0] in LAKE_BUCKETS:
                    bucket = self.stack.physical_name(LAKE_BUCKETS[parts[0]])
                    return bucket, "/".join(parts[1:]) + (trailing if len(parts) > 1 else "")
        raise PermissionError(f"{uri} is in no bucket of the stack (not under the lake's bronze/gold/artifacts)")

    def bucket_arn(self, bucket: str) -> str:
        return f"arn:{self.stack.world.partition}:s3:::{bucket}"


TLS = {"aws:SecureTransport": "true"}


class AuthorizedStorage:
    """A Storage whose every operation is authorized as the S3 calls S3Storage makes for it."""

    def __init__(self, inner, authorizer: Authorizer, lake: str) -> None:
        self._inner, self._authorizer, self._map = inner, authorizer, LakeMap(authorizer.stack, lake)

    def _object(self, action: str, uri: str) -> Request:
        bucket, key = self._map.locate(uri)
        return Request(action, f"{self._map.bucket_arn(bucket)}/{key}", TLS)

    def _list(self, uri: str) -> Request:
        bucket, key = self._map.locate(uri)
        return Request("s3:ListBucket", self._map.bucket_arn(bucket), {**TLS, "s3:prefix": key})

    def _require(self, operation: str, *requests: Request) -> None:
        self._authorizer.require(list(requests), operation, "AccessDenied")

    def list(self, prefix_uri: str):
        self._require("ListObjectsV2", self._list(prefix_uri))
        return self._inner.list(prefix_uri)

    def list_first(self, prefix_uri: str, limit: int):
        self._require("ListObjectsV2", self._list(prefix_uri))
        return self._inner.list_first(prefix_uri, limit)

    def read_bytes(self, uri: str) -> bytes:
        self._require("GetObject", self._object("s3:GetObject", uri))
        return self._inner.read_bytes(uri)

    def read_tail(self, uri: str, length: int) -> bytes:
        self._require("GetObject", self._object("s3:GetObject", uri))
        return self._inner.read_tail(uri, length)

    def write_bytes(self, uri: str, data: bytes) -> None:
        self._require("PutObject", self._object("s3:PutObject", uri))
        self._inner.write_bytes(uri, data)

    def stat(self, uri: str):
        """HeadObject needs s3:GetObject; for a missing key S3 answers 404 only to a caller that may
        also list the bucket, and 403 to any other (so a HEAD without ListBucket fails as on AWS)."""
        self._require("HeadObject", self._object("s3:GetObject", uri))
        found = self._inner.stat(uri)
        if found is None:
            self._require("HeadObject", self._list(uri))
        return found

    def exists(self, uri: str) -> bool:
        self._require("ListObjectsV2", self._list(uri))  # S3Storage.exists lists with Prefix=key
        return self._inner.exists(uri)

    def move(self, source_uri: str, target_uri: str) -> None:
        # CopyObject reads the source and writes the target; DeleteObject removes the source.
        self._require("CopyObject", self._object("s3:GetObject", source_uri), self._object("s3:PutObject", target_uri))
        self._require("DeleteObject", self._object("s3:DeleteObject", source_uri))
        self._inner.move(source_uri, target_uri)

    def delete(self, uri: str) -> None:
        self._require("DeleteObject", self._object("s3:DeleteObject", uri))
        self._inner.delete(uri)

    def open_writer(self, uri: str):
        self._require("CreateMultipartUpload", self._object("s3:PutObject", uri))
        return _AuthorizedWriter(self._inner.open_writer(uri), lambda: self._require(
            "AbortMultipartUpload", self._object("s3:AbortMultipartUpload", uri)))  # fmt: skip

    def __getattr__(self, name: str):
        raise AttributeError(
            f"Storage.{name} has no IAM mapping: add it to iotpipe.local.iam.enforce.AuthorizedStorage "
            "with the S3 actions S3Storage's calls need"
        )


class _AuthorizedWriter(Writer):
    def __init__(self, inner, check_abort: Callable[[], None]) -> None:
        self._inner, self._check_abort = inner, check_abort

    def write(self, data):
        return self._inner.write(data)

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._check_abort()
        self._inner.abort()


# ---------------------------------------------------------------- DynamoDB (the lease folder)
class AuthorizedLeaseStore:
    """A LeaseStore authorized as DynamoDBLeaseStore's calls: UpdateItem and GetItem."""

    def __init__(self, inner, authorizer: Authorizer) -> None:
        self._inner, self._authorizer = inner, authorizer
        self._table = authorizer.stack.get_att("LeaseTable", "Arn")

    def _require(self, operation: str, key: str, *actions: str) -> None:
        context = {"dynamodb:LeadingKeys": [key]}
        self._authorizer.require([Request(a, self._table, context) for a in actions], operation,
                                 "AccessDeniedException")  # fmt: skip

    def _update(self, method: str, key: str, *args, **kwargs):
        self._require("UpdateItem", key, "dynamodb:UpdateItem")
        return getattr(self._inner, method)(key, *args, **kwargs)

    # Every change, releases included, is one conditional UpdateItem (the item is never deleted:
    # its driver fields must outlive a holder).
    def acquire(self, key, holder, seconds, now=None):
        return self._update("acquire", key, holder, seconds, now)

    def renew(self, key, holder, seconds, now=None):
        return self._update("renew", key, holder, seconds, now)

    def mark_pending(self, key, now=None):
        return self._update("mark_pending", key, now)

    def release(self, key, holder):
        return self._update("release", key, holder)

    def give_up(self, key, holder):
        return self._update("give_up", key, holder)

    def claim_driver(self, key, holder, driver, seconds, now=None):
        return self._update("claim_driver", key, holder, driver, seconds, now)

    def renew_driver(self, key, holder, driver, seconds, now=None):
        return self._update("renew_driver", key, holder, driver, seconds, now)

    def end_driver(self, key, holder, driver, seconds, now=None):
        return self._update("end_driver", key, holder, driver, seconds, now)

    def hold_quiet(self, key, holder, seconds, now=None):
        return self._update("hold_quiet", key, holder, seconds, now)

    def note_arrival(self, key, arrived_at):
        return self._update("note_arrival", key, arrived_at)

    def get(self, key: str):
        self._require("GetItem", key, "dynamodb:GetItem")
        return self._inner.get(key)

    def __getattr__(self, name: str):
        raise AttributeError(f"LeaseStore.{name} has no IAM mapping: add it to AuthorizedLeaseStore")


# ---------------------------------------------------------------- Step Functions (the trigger, ReportStatus)
class AuthorizedStepFunctions:
    """The Lambdas' Step Functions client: StartExecution needs states:StartExecution on the
    machine (the trigger), DescribeExecution states:DescribeExecution on the execution (ReportStatus
    asks whether a run that never reported has ended)."""

    def __init__(self, inner, authorizer: Authorizer) -> None:
        self._inner, self._authorizer = inner, authorizer
        self.exceptions = inner.exceptions

    def start_execution(self, **kwargs):
        request = Request("states:StartExecution", kwargs["stateMachineArn"])
        self._authorizer.require([request], "StartExecution", "AccessDeniedException")
        return self._inner.start_execution(**kwargs)

    def describe_execution(self, **kwargs):
        request = Request("states:DescribeExecution", kwargs["executionArn"])
        self._authorizer.require([request], "DescribeExecution", "AccessDeniedException")
        return self._inner.describe_execution(**kwargs)

    def __getattr__(self, name: str):
        raise AttributeError(f"stepfunctions.{name} has no IAM mapping: add it to AuthorizedStepFunctions")


# ---------------------------------------------------------------- Glue (the tables' metadata: the evidence Lambdas)
class AuthorizedGlue:
    """The Lambdas' Glue client: glue:GetTable on the catalog, the database and the table (Glue's
    Data Catalog ARNs), as Glue authorizes a read of an Iceberg table's pointer."""

    def __init__(self, inner, authorizer: Authorizer) -> None:
        self._inner, self._authorizer = inner, authorizer
        self.exceptions = inner.exceptions

    def _arn(self, resource: str) -> str:
        w = self._authorizer.stack.world
        return f"arn:{w.partition}:glue:{w.region}:{w.account}:{resource}"

    def _require(self, action: str, database: str, table: str) -> None:
        resources = ("catalog", f"database/{database}", f"table/{database}/{table}")
        requests = [Request(f"glue:{action}", self._arn(r)) for r in resources]
        self._authorizer.require(requests, action, "AccessDeniedException")

    def get_table(self, **kwargs):
        self._require("GetTable", kwargs["DatabaseName"], kwargs["Name"])
        return self._inner.get_table(**kwargs)

    def __getattr__(self, name: str):
        raise AttributeError(f"glue.{name} has no IAM mapping: add it to AuthorizedGlue")


# ---------------------------------------------------------------- the state machine's integrations
# What each optimized integration needs from the state machine role, as the Step Functions
# developer guide documents it ("IAM policies for ..." pages):
#  - lambda:invoke: lambda:InvokeFunction on the function (lambda-iam.html).
#  - ecs:runTask.sync: ecs:RunTask on the task definition, ecs:StopTask and ecs:DescribeTasks,
#    events:PutTargets/PutRule/DescribeRule on rule/StepFunctionsGetEventsForECSTaskRule
#    (ecs-iam.html); iam:PassRole for the task's execution and task roles (ECS RunTask).
#  - elasticmapreduce:createCluster(.sync): RunJobFlow, DescribeCluster, TerminateJobFlows and
#    iam:PassRole for the roles passed (emr-iam.html); with an AutoTerminationPolicy, EMR also
#    authorizes elasticmapreduce:PutAutoTerminationPolicy (granted on any cluster: it only sets an
#    idle timeout, and at creation the cluster carries no tag a condition could test).
#  - elasticmapreduce:addStep(.sync): AddJobFlowSteps, DescribeStep, CancelSteps on the cluster.
#  - elasticmapreduce:terminateCluster(.sync): TerminateJobFlows, DescribeCluster on the cluster.
#    The EMR .sync integrations poll (connect-emr.html), so they need no EventBridge rule.
#  - emr-serverless:startJobRun(.sync): emr-serverless:StartJobRun on the application,
#    GetJobRun and CancelJobRun on its job runs, events:PutTargets/PutRule/DescribeRule on
#    rule/StepFunctionsGetEventsForEMRServerlessJobRule, and iam:PassRole for the job's execution
#    role, passed to emr-serverless.amazonaws.com (emr-serverless-iam.html).
#  - sns:publish: sns:Publish on the topic (sns-iam.html); to a topic encrypted with a customer
#    managed key, also kms:GenerateDataKey and kms:Decrypt on that key (sns-key-management.html).
#  - states:startExecution: states:StartExecution on the state machine (stepfunctions-iam.html).
# Tag conditions on EMR clusters are evaluated with the tags the cluster was created with
# (elasticmapreduce:RequestTag/... at creation, elasticmapreduce:ResourceTag/... afterwards).
INTEGRATION_ERRORS = {
    "lambda": "Lambda.AWSLambdaException",
    "ecs": "ECS.AccessDeniedException",
    "elasticmapreduce": "EMR.AmazonElasticMapReduceException",
    "emr-serverless": "EMRServerless.AccessDeniedException",
    "sns": "SNS.AuthorizationErrorException",
    "states": "StepFunctions.AccessDeniedException",
}


@dataclass
class IntegrationAuthorizer:
    """Checks a Task state's integration against the state machine role before it runs."""

    stack: Stack
    cluster_tags: Callable[[str], Mapping[str, str] | None]
    machine: str = "PipelineStateMachine"

    def _arn(self, service: str, resource: str) -> str:
        w = self.stack.world
        return f"arn:{w.partition}:{service}:{w.region}:{w.account}:{resource}"

    def _role_arn(self, name_or_arn: str) -> str:
        if name_or_arn.startswith("arn:"):
            return name_or_arn
        return f"arn:{self.stack.world.partition}:iam::{self.stack.world.account}:role/{name_or_arn}"

    def _profile_roles(self, profile: str) -> list[str]:
        for logical, resource in self.stack.resources.items():
            if resource["Type"] == "AWS::IAM::InstanceProfile" and self.stack.ref(logical) == profile:
                return [self._role_arn(str(r)) for r in self.stack.resolve(resource["Properties"]["Roles"])]
        raise KeyError(f"no instance profile {profile} in the template")

    def _task_roles(self, task_definition: str) -> list[str]:
        for logical, resource in self.stack.resources.items():
            if resource["Type"] == "AWS::ECS::TaskDefinition" and self.stack.ref(logical) == task_definition:
                properties = self.stack.resolve(resource["Properties"])
                return [properties[k] for k in ("ExecutionRoleArn", "TaskRoleArn") if properties.get(k)]
        raise KeyError(f"no task definition {task_definition} in the template")

    def _cluster(self, cluster_id: str, tags: Mapping[str, str] | None) -> list:
        context = {f"elasticmapreduce:ResourceTag/{k}": v for k, v in (tags or {}).items()}
        return [self._arn("elasticmapreduce", f"cluster/{cluster_id}"), context]

    def _topic_key(self, topic_arn: str) -> str | None:
        """The customer managed key a topic of the template is encrypted with; None for an AWS
        managed key (alias/aws/sns), whose policy lets the account's SNS publishers use it."""
        for logical, resource in self.stack.resources.items():
            if resource["Type"] == "AWS::SNS::Topic" and self.stack.ref(logical) == topic_arn:
                key = self.stack.resolve((resource.get("Properties") or {}).get("KmsMasterKeyId"))
                return None if not key or str(key).startswith("alias/aws/") else str(key)
        raise KeyError(f"no topic {topic_arn} in the template")

    def requests(self, service: str, action: str, condition: str | None, parameters: dict) -> list[Request]:
        sync = condition is not None and condition.startswith("sync")
        if (service, action) == ("lambda", "invoke"):
            name = parameters["FunctionName"]
            arn = name if name.startswith("arn:") else self._arn("lambda", f"function:{name}")
            return [Request("lambda:InvokeFunction", arn)]
        if (service, action) == ("ecs", "runTask"):
            cluster = parameters.get("Cluster", "default")
            cluster_arn = cluster if cluster.startswith("arn:") else self._arn("ecs", f"cluster/{cluster}")
            found = [Request("ecs:RunTask", parameters["TaskDefinition"], {"ecs:cluster": cluster_arn})]
            found += [Request("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
                      for role in self._task_roles(parameters["TaskDefinition"])]  # fmt: skip
            if sync:
                task = self._arn("ecs", f"task/{cluster_arn.rsplit('/', 1)[-1]}/local-task")
                found += [Request(a, task, {"ecs:cluster": cluster_arn}) for a in ("ecs:StopTask", "ecs:DescribeTasks")]
                rule = self._arn("events", "rule/StepFunctionsGetEventsForECSTaskRule")
                found += [Request(a, rule) for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")]
            return found
        if (service, action) == ("elasticmapreduce", "createCluster"):
            tags = {t["Key"]: t["Value"] for t in parameters.get("Tags", [])}
            create = {f"elasticmapreduce:RequestTag/{k}": v for k, v in tags.items()}
            create["aws:TagKeys"] = sorted(tags)
            found = [Request("elasticmapreduce:RunJobFlow", "*", create)]
            roles = [self._role_arn(parameters["ServiceRole"]), *self._profile_roles(parameters["JobFlowRole"])]
            found += [Request("iam:PassRole", role) for role in roles]
            cluster, context = self._cluster("j-NEWCLUSTER", tags)
            found += [Request(a, cluster, context) for a in ("elasticmapreduce:DescribeCluster",
                                                            "elasticmapreduce:TerminateJobFlows")]  # fmt: skip
            if "AutoTerminationPolicy" in parameters:  # EMR authorizes the policy as its own action
                found.append(Request("elasticmapreduce:PutAutoTerminationPolicy", cluster))
            return found
        if (service, action) == ("elasticmapreduce", "addStep"):
            cluster, context = self._cluster(parameters["ClusterId"], self.cluster_tags(parameters["ClusterId"]))
            actions = ["AddJobFlowSteps", "DescribeStep", "CancelSteps"] if sync else ["AddJobFlowSteps"]
            return [Request(f"elasticmapreduce:{a}", cluster, context) for a in actions]
        if (service, action) == ("elasticmapreduce", "terminateCluster"):
            cluster, context = self._cluster(parameters["ClusterId"], self.cluster_tags(parameters["ClusterId"]))
            actions = ["TerminateJobFlows", "DescribeCluster"] if sync else ["TerminateJobFlows"]
            return [Request(f"elasticmapreduce:{a}", cluster, context) for a in actions]
        if (service, action) == ("emr-serverless", "startJobRun"):
            application = self._arn("emr-serverless", f"/applications/{parameters['ApplicationId']}")
            found = [Request("emr-serverless:StartJobRun", application),
                     Request("iam:PassRole", parameters["ExecutionRoleArn"],
                             {"iam:PassedToService": "emr-serverless.amazonaws.com"})]  # fmt: skip
            if sync:
                job_run = f"{application}/jobruns/00localjobrun"
                found += [Request(a, job_run) for a in ("emr-serverless:GetJobRun", "emr-serverless:CancelJobRun")]
                rule = self._arn("events", "rule/StepFunctionsGetEventsForEMRServerlessJobRule")
                found += [Request(a, rule) for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")]
            return found
        if (service, action) == ("sns", "publish"):
            key = self._topic_key(parameters["TopicArn"])
            return [Request("sns:Publish", parameters["TopicArn"])] + [
                Request(a, key) for a in ("kms:GenerateDataKey", "kms:Decrypt") if key
            ]
        if (service, action) == ("states", "startExecution") and not sync:
            return [Request("states:StartExecution", parameters["StateMachineArn"])]
        raise NotImplementedError(f"no IAM requirements known for {service}:{action} ({condition}): add them here")

    def check(self, service: str, action: str, condition: str | None, parameters: dict) -> None:
        """Raise the integration's error if the state machine role does not allow the call."""
        from iotpipe.local.bindings import TaskError

        for request in self.requests(service, action, condition, parameters):
            decision = self.stack.decide(self.machine, request)
            if not decision.allowed:
                denied = access_denied(self.stack, self.machine, request, "AccessDeniedException", action)
                raise TaskError(INTEGRATION_ERRORS[service], denied.response["Error"]["Message"])


def authorized_runtime(stack: Stack, lake: str, storage, leases) -> tuple[Any, Any, Authorizer]:
    """Storage and lease store for `lambda_runtime.configure`, enforcing each function's role."""
    authorizer = Authorizer(stack)
    authorized_leases = AuthorizedLeaseStore(leases, authorizer) if leases is not None else None
    return AuthorizedStorage(storage, authorizer, lake), authorized_leases, authorizer
