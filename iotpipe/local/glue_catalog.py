"""The local run's Glue Data Catalog: moto's Glue, with the template's database and tables.

`iotpipe run` deploys nothing, so the Glue resources of template.yaml are created in moto as
CloudFormation would create them (their resolved properties, the same API calls). ReportStatus
then registers partitions through a client that enforces its role (`iam.AuthorizedGlue`) and
the API's bounds (`api_shapes.BoundsCheckedClient`). moto's state lives as long as one local
engine; the partitions are kept in `<lake>/catalog/glue.json` between engines, as the account's
catalog outlives an execution on AWS, so a second run meets the first run's partitions.
"""

from __future__ import annotations

import json
from pathlib import Path

from iotpipe.local.iam.stack import Stack

CATALOG_FILE = ("catalog", "glue.json")


def catalog_path(lake: str) -> Path:
    return Path(lake).joinpath(*CATALOG_FILE)


def deploy(stack: Stack, glue) -> list[tuple[str, str]]:
    """Create the template's Glue databases and tables in `glue` (moto); (database, table) pairs."""
    tables = []
    for resource in stack.resources.values():
        if resource["Type"] == "AWS::Glue::Database":
            glue.create_database(DatabaseInput=stack.resolve(resource["Properties"]["DatabaseInput"]))
    for resource in stack.resources.values():
        if resource["Type"] == "AWS::Glue::Table":
            properties = stack.resolve(resource["Properties"])
            glue.create_table(DatabaseName=properties["DatabaseName"], TableInput=properties["TableInput"])
            tables.append((properties["DatabaseName"], properties["TableInput"]["Name"]))
    return tables


def partitions(glue, database: str, table: str) -> list[dict]:
    """Every partition of a table: values, location and how it is read."""
    found = []
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        found += [{"Values": p["Values"], "Location": p["StorageDescriptor"]["Location"],
                   "StorageDescriptor": p["StorageDescriptor"]} for p in page["Partitions"]]  # fmt: skip
    return sorted(found, key=lambda p: p["Values"])


def restore(glue, lake: str) -> None:
    """Register the partitions an earlier engine kept for this lake."""
    path = catalog_path(lake)
    if not path.exists():
        return
    for key, kept in json.loads(path.read_text()).items():
        database, table = key.split(".", 1)
        for start in range(0, len(kept), 100):
            chunk = [_kept_input(p) for p in kept[start : start + 100]]
            glue.batch_create_partition(DatabaseName=database, TableName=table, PartitionInputList=chunk)


def _kept_input(partition: dict) -> dict:
    """A kept partition as a PartitionInput (a catalog kept before descriptors were: its location)."""
    return {"Values": partition["Values"], "StorageDescriptor": partition.get("StorageDescriptor")
            or {"Location": partition["Location"]}}  # fmt: skip


def save(glue, lake: str, tables: list[tuple[str, str]]) -> None:
    """Keep the partitions for the next engine (nothing is written while there are none)."""
    kept = {f"{database}.{table}": partitions(glue, database, table) for database, table in tables}
    path = catalog_path(lake)
    if any(kept.values()) or path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(kept, indent=1, sort_keys=True))
