"""The cluster watchdog finds this stack's transient clusters still alive (moto's EMR) and reports
the oldest one's age, so a static alarm can watch clusters of runs that have not started yet."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from iotpipe.run.clusters import transient_clusters


def start_cluster(emr, name: str, tags: dict[str, str]) -> str:
    return emr.run_job_flow(
        Name=name,
        ReleaseLabel="emr-7.9.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )["JobFlowId"]


@pytest.fixture
def emr(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("emr", region_name="us-east-1")


def created_at(emr, cluster_id):
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["Timeline"]["CreationDateTime"]


def test_only_this_stacks_transient_clusters_are_counted_with_their_age(emr):
    # Given a transient cluster of this stack, one of another stack, a long-lived cluster the user
    # tagged for this stack (no run tag) and one that is not iotpipe's at all
    ours = start_cluster(emr, "iotpipe-run-1", {"iotpipe-stack": "prod", "iotpipe:run": "run-1"})
    start_cluster(emr, "iotpipe-run-9", {"iotpipe-stack": "test", "iotpipe:run": "run-9"})
    start_cluster(emr, "iotpipe-shared", {"iotpipe-stack": "prod"})
    start_cluster(emr, "etl", {"iotpipe-stack": "prod", "iotpipe:run": "x"})

    # When the watchdog looks 90 minutes later
    found = transient_clusters(emr, "prod", created_at(emr, ours) + timedelta(minutes=90))

    # Then only this stack's transient cluster counts, with its age
    assert [(c.cluster_id, c.run_id, c.minutes) for c in found] == [(ours, "run-1", 90.0)]


def test_terminated_clusters_are_not_counted(emr):
    ours = start_cluster(emr, "iotpipe-run-1", {"iotpipe-stack": "prod", "iotpipe:run": "run-1"})
    emr.terminate_job_flows(JobFlowIds=[ours])
    assert transient_clusters(emr, "prod", created_at(emr, ours) + timedelta(hours=5)) == []


def test_a_cluster_this_role_may_not_describe_is_someone_elses_and_skipped(emr):
    start_cluster(emr, "iotpipe-run-1", {"iotpipe-stack": "prod", "iotpipe:run": "run-1"})

    class Denied:
        def get_paginator(self, name):
            return emr.get_paginator(name)

        def describe_cluster(self, ClusterId):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeCluster")

    assert transient_clusters(Denied(), "prod", created_at(emr, emr.list_clusters()["Clusters"][0]["Id"])) == []
