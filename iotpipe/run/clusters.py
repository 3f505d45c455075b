"""The transient EMR clusters of this stack that are still alive, and for how long.

The cluster watchdog turns this into one metric (the oldest one's age) that a static alarm can
watch: EMR's own metrics carry the cluster id as their dimension, so a template cannot name the
clusters of runs that have not started yet. It also sees a cluster an aborted or timed-out
execution left behind, which no state of the state machine reaches any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

# Every state in which a cluster still costs money (TERMINATING included: it can hang there).
ALIVE_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING"]
# CreateCluster in statemachine/pipeline.asl.json names a transient cluster `iotpipe-<run id>` and
# tags it with the stack and the run; a cluster the user passes as `cluster_id` has no run tag.
NAME_PREFIX = "iotpipe-"
STACK_TAG = "iotpipe-stack"
RUN_TAG = "iotpipe:run"


@dataclass(frozen=True)
class AliveCluster:
    cluster_id: str
    run_id: str
    state: str
    minutes: float


def transient_clusters(emr, stack_name: str, now: datetime) -> list[AliveCluster]:
    """This stack's transient clusters not yet terminated, oldest first. Only clusters named as
    the state machine names them are described; one this role may not describe (the IAM policy
    allows only clusters tagged with this stack) belongs to someone else and is skipped."""
    found = []
    for page in emr.get_paginator("list_clusters").paginate(ClusterStates=ALIVE_STATES):
        for summary in page["Clusters"]:
            if not summary["Name"].startswith(NAME_PREFIX):
                continue
            try:
                cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            except ClientError as error:
                if error.response["Error"]["Code"] in ("AccessDeniedException", "AccessDenied"):
                    continue
                raise
            tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
            if tags.get(STACK_TAG) != stack_name or RUN_TAG not in tags:
                continue
            created = summary["Status"]["Timeline"]["CreationDateTime"]
            minutes = max(0.0, (now - created).total_seconds() / 60)
            found.append(AliveCluster(summary["Id"], tags[RUN_TAG], summary["Status"]["State"], round(minutes, 1)))
    return sorted(found, key=lambda c: -c.minutes)
