"""A lease on the Spark checkpoint: at most one Spark step runs against it at any time.

The holder takes the lease before its Spark step, the job renews it while it runs (heartbeat),
and the holder releases it on every path. A holder that died stops renewing, so its lease
expires and the next run takes it over. A run that finds the lease busy marks it *pending*
instead of waiting; the holder's release then fails while the mark is set, so the holder
drains again: data that arrived while it was transforming is never left behind.

Two stores with the same conditional-write semantics: DynamoDB on AWS, a locked file locally.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    expires_at: float
    pending: bool
    marked_at: float | None = None  # when the latest pending mark was set (kept after the mark is cleared)


class LeaseStore(Protocol):
    def acquire(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool: ...
    def renew(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool: ...
    def mark_pending(self, key: str, now: float | None = None) -> bool: ...
    def release(self, key: str, holder: str) -> str: ...
    def get(self, key: str) -> Lease | None: ...


class DynamoDBLeaseStore:
    """Items {key, holder, expires_at, pending}; every change is one conditional write."""

    def __init__(self, table: str, client=None, region: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb", region_name=region)
        self.table, self.client = table, client

    def _conditional(self, **kwargs) -> bool:
        try:
            getattr(self.client, kwargs.pop("operation"))(TableName=self.table, **kwargs)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def acquire(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._conditional(
            operation="update_item",
            Key={"key": {"S": key}},
            UpdateExpression="SET holder = :holder, expires_at = :until, pending = if_not_exists(pending, :false)",
            ConditionExpression="attribute_not_exists(holder) OR expires_at < :now OR holder = :holder",
            ExpressionAttributeValues={":now": {"N": str(now)}, ":holder": {"S": holder},
                                       ":until": {"N": str(now + seconds)}, ":false": {"BOOL": False}},
        )  # fmt: skip

    def renew(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._conditional(
            operation="update_item",
            Key={"key": {"S": key}},
            UpdateExpression="SET expires_at = :until",
            ConditionExpression="holder = :holder AND expires_at >= :now",
            ExpressionAttributeValues={":until": {"N": str(now + seconds)}, ":holder": {"S": holder},
                                       ":now": {"N": str(now)}},
        )  # fmt: skip

    def mark_pending(self, key: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._conditional(
            operation="update_item",
            Key={"key": {"S": key}},
            UpdateExpression="SET pending = :true, marked_at = :now",
            ConditionExpression="attribute_exists(holder) AND expires_at >= :now",
            ExpressionAttributeValues={":true": {"BOOL": True}, ":now": {"N": str(now)}},
        )

    def release(self, key: str, holder: str) -> str:
        if self._conditional(
            operation="delete_item",
            Key={"key": {"S": key}},
            ConditionExpression="holder = :holder AND pending = :false",
            ExpressionAttributeValues={":holder": {"S": holder}, ":false": {"BOOL": False}},
        ):
            return "released"
        if self._conditional(
            operation="update_item",
            Key={"key": {"S": key}},
            UpdateExpression="SET pending = :false",
            ConditionExpression="holder = :holder AND pending = :true",
            ExpressionAttributeValues={":holder": {"S": holder}, ":false": {"BOOL": False}, ":true": {"BOOL": True}},
        ):
            return "pending"
        return "not-held"

    def get(self, key: str) -> Lease | None:
        item = self.client.get_item(TableName=self.table, Key={"key": {"S": key}}, ConsistentRead=True).get("Item")
        if not item:
            return None
        marked = item.get("marked_at", {}).get("N")
        return Lease(
            key, item["holder"]["S"], float(item["expires_at"]["N"]), item["pending"]["BOOL"],
            float(marked) if marked is not None else None,
        )  # fmt: skip


_DELETE = object()


class FileLeaseStore:
    """The same semantics on one machine: a JSON file per key, changed under an exclusive lock."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _change(self, key: str, change):
        """Run `change(current) -> (result, new state | None | _DELETE)` under the key's lock."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.json"
        with open(self.directory / f".{key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = json.loads(path.read_text()) if path.exists() else None
            result, new_state = change(current)
            if new_state is _DELETE:
                path.unlink()
            elif new_state is not None:
                tmp = path.with_name(f".{key}.tmp")
                tmp.write_text(json.dumps(new_state))
                os.replace(tmp, path)
            return result

    def acquire(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if current and current["expires_at"] >= now and current["holder"] != holder:
                return False, None
            pending = bool(current and current["pending"])
            marked = current.get("marked_at") if current else None
            return True, {"holder": holder, "expires_at": now + seconds, "pending": pending, "marked_at": marked}

        return self._change(key, change)

    def renew(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if not current or current["holder"] != holder or current["expires_at"] < now:
                return False, None
            return True, {**current, "expires_at": now + seconds}

        return self._change(key, change)

    def mark_pending(self, key: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if not current or current["expires_at"] < now:
                return False, None
            return True, {**current, "pending": True, "marked_at": now}

        return self._change(key, change)

    def release(self, key: str, holder: str) -> str:
        def change(current):
            if not current or current["holder"] != holder:
                return "not-held", None
            if current["pending"]:
                return "pending", {**current, "pending": False}
            return "released", _DELETE

        return self._change(key, change)

    def get(self, key: str) -> Lease | None:
        path = self.directory / f"{key}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Lease(key, data["holder"], data["expires_at"], data["pending"], data.get("marked_at"))


def lease_store_for(uri: str, client=None) -> LeaseStore:
    """`dynamodb://<table>?region=<region>` on AWS, a folder path locally.

    The region travels in the URI because the Spark job's heartbeat runs on EMR nodes, where
    boto3 finds no region by itself. Without `?region=` the client takes boto3's default.
    """
    if uri.startswith("dynamodb://"):
        parsed = urlparse(uri)
        region = parse_qs(parsed.query).get("region", [None])[0]
        return DynamoDBLeaseStore(parsed.netloc, client, region=region)
    return FileLeaseStore(uri)
