"""A lease on the Spark checkpoint: at most one Spark driver writes to it at any time.

A run (an execution) takes the lease before its Spark step and releases it on every path. Each
Spark attempt of the run is a *driver*: it claims the lease for itself, renews it while it runs
(heartbeat) and ends its claim when it exits. A claim fences the previous driver (its renewals
fail from then on, so it stops writing), and when the previous driver did not end its claim (it
was killed, or is still running after its EMR step ended FAILED), the new driver waits until the
last expiry the old one proved before it writes anything. A holder that died stops renewing, so
its lease expires and the next run takes it over; the driver fields survive the change of
holder, so the next run's driver waits out a driver that may still be alive.

A run that finds the lease busy marks it *pending* instead of waiting; the holder's release
then fails while the mark is set, so the holder drains again: data that arrived while it was
transforming is never left behind. `give_up` releases whatever the mark, and says whether one
was set, for paths that hand over to a follow-up run instead of draining.

The run's own calls (renew, claim, hold_quiet) need only that it is still the holder: past its
expiry, nobody else took the lease. The job's renewals also need the lease unexpired: a driver
that could not renew in time has stopped writing, and must not start again.

`arrived_at` is the newest arrival of Bronze data the trigger has seen: a run started for data
that the checkpoint already took has nothing to do.

Two stores with the same conditional-write semantics: DynamoDB on AWS, a locked file locally.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol
from urllib.parse import parse_qs, urlparse

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class Lease:
    key: str
    holder: Optional[str]  # None once released
    expires_at: float
    pending: bool
    marked_at: Optional[float] = None  # when the latest pending mark was set (kept after the mark is cleared)
    driver: Optional[str] = None  # the Spark attempt allowed to write, until it ends its claim
    driver_until: Optional[float] = None  # the last expiry that driver proved
    arrived_at: Optional[float] = None  # the newest Bronze arrival the trigger reported

    def held_by(self, holder: str, now: float) -> bool:
        return self.holder == holder and self.expires_at >= now

    def live_driver(self, now: float) -> Optional[str]:
        """The driver that may still be writing: one that has not ended its claim nor outlived it."""
        return self.driver if self.driver and (self.driver_until or 0) >= now else None


class LeaseStore(Protocol):
    def acquire(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool: ...
    def renew(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool: ...
    def mark_pending(self, key: str, now: float | None = None) -> bool: ...
    def release(self, key: str, holder: str) -> str: ...
    def give_up(self, key: str, holder: str) -> tuple[str, bool]: ...
    def claim_driver(
        self, key: str, holder: str, driver: str, seconds: float, now: float | None = None
    ) -> Optional[float]: ...
    def renew_driver(self, key: str, holder: str, driver: str, seconds: float, now: float | None = None) -> bool: ...
    def end_driver(self, key: str, holder: str, driver: str, seconds: float, now: float | None = None) -> bool: ...
    def hold_quiet(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool: ...
    def note_arrival(self, key: str, arrived_at: float) -> None: ...
    def get(self, key: str) -> Lease | None: ...


def _wait_for_previous(old: dict | None, driver: str, now: float) -> float:
    """Until when a claim by `driver` must wait for the driver it replaced (0: no wait)."""
    previous = (old or {}).get("driver")
    until = float((old or {}).get("driver_until") or 0.0)
    return until if previous and previous != driver and until >= now else 0.0


class DynamoDBLeaseStore:
    """One item per key; every change is one conditional write."""

    def __init__(self, table: str, client=None, region: str | None = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            # Short timeouts and few retries: a lease call must fail fast rather than hang past
            # the lease (botocore's defaults are 60 s per call and, for DynamoDB, 10 attempts).
            fail_fast = Config(connect_timeout=5, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
            client = boto3.client("dynamodb", region_name=region, config=fail_fast)
        self.table, self.client = table, client

    def _update(self, key: str, update: str, condition: str | None, values: dict, old: bool = False):
        """The item's old attributes (plain values) if the write happened, else None."""
        kwargs = {"TableName": self.table, "Key": {"key": {"S": key}}, "UpdateExpression": update}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if old:
            kwargs["ReturnValues"] = "ALL_OLD"
        try:
            response = self.client.update_item(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return {name: _plain(value) for name, value in response.get("Attributes", {}).items()}

    def acquire(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return (
            self._update(
                key,
                "SET holder = :holder, expires_at = :until, pending = if_not_exists(pending, :false)",
                "attribute_not_exists(holder) OR expires_at < :now OR holder = :holder",
                {":now": _n(now), ":holder": {"S": holder}, ":until": _n(now + seconds), ":false": {"BOOL": False}},
            )
            is not None
        )

    def renew(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._update(
            key, "SET expires_at = :until", "holder = :holder",
            {":until": _n(now + seconds), ":holder": {"S": holder}},
        ) is not None  # fmt: skip

    def mark_pending(self, key: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._update(
            key, "SET pending = :true, marked_at = :now", "attribute_exists(holder) AND expires_at >= :now",
            {":true": {"BOOL": True}, ":now": _n(now)},
        ) is not None  # fmt: skip

    def release(self, key: str, holder: str) -> str:
        free = "REMOVE holder SET expires_at = :zero"
        if self._update(key, free, "holder = :holder AND pending = :false",
                        {":holder": {"S": holder}, ":false": {"BOOL": False}, ":zero": _n(0)}) is not None:  # fmt: skip
            return "released"
        flags = {":holder": {"S": holder}, ":false": {"BOOL": False}, ":true": {"BOOL": True}}
        if self._update(key, "SET pending = :false", "holder = :holder AND pending = :true", flags) is not None:
            return "pending"
        return "not-held"

    def give_up(self, key: str, holder: str) -> tuple[str, bool]:
        old = self._update(
            key, "REMOVE holder SET expires_at = :zero, pending = :false", "holder = :holder",
            {":holder": {"S": holder}, ":false": {"BOOL": False}, ":zero": _n(0)}, old=True,
        )  # fmt: skip
        return ("not-held", False) if old is None else ("released", bool(old.get("pending")))

    def claim_driver(
        self, key: str, holder: str, driver: str, seconds: float, now: float | None = None
    ) -> Optional[float]:
        now = time.time() if now is None else now
        old = self._update(
            key, "SET driver = :driver, driver_until = :until, expires_at = :until", "holder = :holder",
            {":driver": {"S": driver}, ":until": _n(now + seconds), ":holder": {"S": holder}}, old=True,
        )  # fmt: skip
        return None if old is None else _wait_for_previous(old, driver, now)

    def renew_driver(self, key: str, holder: str, driver: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._update(
            key, "SET expires_at = :until, driver_until = :until",
            "holder = :holder AND driver = :driver AND expires_at >= :now",
            {":until": _n(now + seconds), ":holder": {"S": holder}, ":driver": {"S": driver}, ":now": _n(now)},
        ) is not None  # fmt: skip

    def end_driver(self, key: str, holder: str, driver: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._update(
            key, "REMOVE driver, driver_until SET expires_at = :until", "holder = :holder AND driver = :driver",
            {":holder": {"S": holder}, ":driver": {"S": driver}, ":until": _n(now + seconds)},
        ) is not None  # fmt: skip

    def hold_quiet(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._update(
            key, "SET expires_at = :until",
            "holder = :holder AND (attribute_not_exists(driver) OR driver_until < :now)",
            {":until": _n(now + seconds), ":holder": {"S": holder}, ":now": _n(now)},
        ) is not None  # fmt: skip

    def note_arrival(self, key: str, arrived_at: float) -> None:
        self._update(
            key,
            "SET arrived_at = :at, pending = if_not_exists(pending, :false), "
            "expires_at = if_not_exists(expires_at, :zero)",
            "attribute_not_exists(arrived_at) OR arrived_at < :at",
            {":at": _n(arrived_at), ":false": {"BOOL": False}, ":zero": _n(0)},
        )  # fmt: skip

    def get(self, key: str) -> Lease | None:
        item = self.client.get_item(TableName=self.table, Key={"key": {"S": key}}, ConsistentRead=True).get("Item")
        return _lease(key, {name: _plain(value) for name, value in item.items()}) if item else None


def _n(value: float) -> dict:
    return {"N": repr(float(value))}


def _plain(value: dict):
    kind, raw = next(iter(value.items()))
    return float(raw) if kind == "N" else raw


def _lease(key: str, data: dict) -> Lease:
    def number(name):
        return float(data[name]) if data.get(name) is not None else None

    return Lease(
        key, data.get("holder"), number("expires_at") or 0.0, bool(data.get("pending")), number("marked_at"),
        data.get("driver"), number("driver_until"), number("arrived_at"),
    )  # fmt: skip


class FileLeaseStore:
    """The same semantics on one machine: a JSON file per key, changed under an exclusive lock."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _change(self, key: str, change):
        """Run `change(current) -> (result, new state | None)` under the key's lock."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.json"
        with open(self.directory / f".{key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = json.loads(path.read_text()) if path.exists() else None
            result, new_state = change(current or {})
            if new_state is not None:
                tmp = path.with_name(f".{key}.tmp")
                tmp.write_text(json.dumps({k: v for k, v in new_state.items() if v is not None}))
                os.replace(tmp, path)
            return result

    def acquire(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if current.get("holder") and current.get("expires_at", 0) >= now and current["holder"] != holder:
                return False, None
            return True, {**current, "holder": holder, "expires_at": now + seconds,
                          "pending": bool(current.get("pending"))}  # fmt: skip

        return self._change(key, change)

    def renew(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if current.get("holder") != holder:
                return False, None
            return True, {**current, "expires_at": now + seconds}

        return self._change(key, change)

    def mark_pending(self, key: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if not current.get("holder") or current.get("expires_at", 0) < now:
                return False, None
            return True, {**current, "pending": True, "marked_at": now}

        return self._change(key, change)

    def release(self, key: str, holder: str) -> str:
        def change(current):
            if current.get("holder") != holder:
                return "not-held", None
            if current.get("pending"):
                return "pending", {**current, "pending": False}
            return "released", {**current, "holder": None, "expires_at": 0.0}

        return self._change(key, change)

    def give_up(self, key: str, holder: str) -> tuple[str, bool]:
        def change(current):
            if current.get("holder") != holder:
                return ("not-held", False), None
            return ("released", bool(current.get("pending"))), {
                **current, "holder": None, "expires_at": 0.0, "pending": False}  # fmt: skip

        return self._change(key, change)

    def claim_driver(
        self, key: str, holder: str, driver: str, seconds: float, now: float | None = None
    ) -> Optional[float]:
        now = time.time() if now is None else now

        def change(current):
            if current.get("holder") != holder:
                return None, None
            claimed = {**current, "driver": driver, "driver_until": now + seconds, "expires_at": now + seconds}
            return _wait_for_previous(current, driver, now), claimed

        return self._change(key, change)

    def renew_driver(self, key: str, holder: str, driver: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if not _lease(key, current).held_by(holder, now) or current.get("driver") != driver:
                return False, None
            return True, {**current, "expires_at": now + seconds, "driver_until": now + seconds}

        return self._change(key, change)

    def end_driver(self, key: str, holder: str, driver: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if current.get("holder") != holder or current.get("driver") != driver:
                return False, None
            return True, {**current, "driver": None, "driver_until": None, "expires_at": now + seconds}

        return self._change(key, change)

    def hold_quiet(self, key: str, holder: str, seconds: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def change(current):
            if current.get("holder") != holder or _lease(key, current).live_driver(now):
                return False, None
            return True, {**current, "expires_at": now + seconds}

        return self._change(key, change)

    def note_arrival(self, key: str, arrived_at: float) -> None:
        def change(current):
            if current.get("arrived_at") is not None and current["arrived_at"] >= arrived_at:
                return None, None
            return None, {"expires_at": 0.0, "pending": False, **current, "arrived_at": arrived_at}

        self._change(key, change)

    def get(self, key: str) -> Lease | None:
        path = self.directory / f"{key}.json"
        return _lease(key, json.loads(path.read_text())) if path.exists() else None


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
