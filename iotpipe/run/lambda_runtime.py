"""Everything the Lambda handlers share, created once per container in this one place:
Powertools objects, the settings parsed from the environment, and the storage client.

`iotpipe run` calls `configure` with the local lake's settings instead of the environment.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

from iotpipe.lake.storage import Storage, storage_for
from iotpipe.run.lease_store import LeaseStore, lease_store_for
from iotpipe.run.settings import Settings

CORRELATION_ID_PATH = "execution_id"

SERVICE = "iotpipe"
METRICS_NAMESPACE = "iotpipe"  # the alarms and the dashboard in template.yaml read the metrics here

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
settings: Settings | None = None
storage: Storage | None = None
leases: LeaseStore | None = None


def metrics_disabled() -> bool:
    """Powertools' switch (set by `iotpipe run`, whose Lambdas print to its own stdout);
    `single_metric` does not honour it in Powertools 3.37, so its callers check it here."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true"


def configure(new_settings: Settings, new_storage: Storage | None = None, new_leases: LeaseStore | None = None) -> None:
    global settings, storage, leases
    settings = new_settings
    storage = new_storage or storage_for(new_settings.gold_uri)
    leases = new_leases or (lease_store_for(new_settings.lease_store) if new_settings.lease_store else None)


def current() -> tuple[Settings, Storage]:
    if settings is None or storage is None:
        raise RuntimeError("iotpipe settings are not configured: set the environment variables of Settings")
    return settings, storage


# AWS clients, each created once, on first use; `iotpipe run` and tests put their own here.
clients: dict = {}


def aws_client(service: str):
    if service not in clients:
        import boto3

        clients[service] = boto3.client(service)
    return clients[service]


def stepfunctions_client():
    """The trigger starts executions; ReportStatus asks whether a run that never reported has ended."""
    return aws_client("stepfunctions")


def glue_client():
    """The catalog: where each table's current metadata is (AssessStepFailure, VerifyGold, ReportStatus)."""
    return aws_client("glue")


def emr_client():
    """Only the cluster watchdog reads EMR."""
    return aws_client("emr")


def current_leases() -> LeaseStore:
    if leases is None:
        raise RuntimeError("no lease store configured: set LEASE_STORE")
    return leases


if "GOLD_URI" in os.environ:
    configure(Settings.from_env(os.environ))
