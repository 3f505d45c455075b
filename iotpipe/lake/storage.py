"""One small storage interface over local folders and S3, so every component takes a URI.

Local paths stand in for buckets on a laptop; `s3://bucket/prefix` works unchanged on AWS.
Writers never expose a partial object: local files are written under a hidden name and
renamed, S3 objects are streamed by multipart upload and completed only at the end.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

MULTIPART_PART_BYTES = 16 * 1024 * 1024
IN_PROGRESS_SUFFIX = ".inprogress"  # a local file's hidden temporary name while it is written


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    modified: float = 0.0  # seconds since the epoch (S3: LastModified, whole seconds)


class Storage(Protocol):
    def list(self, prefix_uri: str) -> list[ObjectInfo]: ...
    def list_first(self, prefix_uri: str, limit: int) -> list[ObjectInfo]: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def read_tail(self, uri: str, length: int) -> bytes: ...
    def write_bytes(self, uri: str, data: bytes) -> None: ...
    def exists(self, uri: str) -> bool: ...
    def stat(self, uri: str) -> ObjectInfo | None: ...
    def move(self, source_uri: str, target_uri: str) -> None: ...
    def delete(self, uri: str) -> None: ...
    def open_writer(self, uri: str) -> BinaryIO: ...


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://") or uri.startswith("s3a://")


def join(base: str, *parts: str) -> str:
    """Join URI segments with '/', for local paths and s3:// alike."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


class Writer:
    """Commits (close) when the block succeeds, discards (abort) when it raises."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _AtomicLocalWriter(Writer):
    """File writer that renames a hidden temporary file into place on close."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._final = path
        self._tmp = path.with_name(f".{path.name}{IN_PROGRESS_SUFFIX}")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()

    def write(self, data: bytes | memoryview) -> int:
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()
        os.replace(self._tmp, self._final)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalStorage:
    @staticmethod
    def _path(uri: str) -> Path:
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri)

    def list(self, prefix_uri: str) -> list[ObjectInfo]:
        """Every file whose path starts with `prefix_uri`, as S3 lists keys by a string prefix:
        `runs/ignored` also finds `runs/ignored-reported/...`; only `runs/ignored/` means the folder.
        The local run must not be more forgiving than S3 here."""
        text = str(self._path(prefix_uri)) + ("/" if prefix_uri.endswith("/") else "")
        folder, _, name_prefix = text.rpartition("/")
        parent = Path(folder or "/")
        if not parent.is_dir():
            return []
        found = []
        for child in parent.iterdir():
            if not child.name.startswith(name_prefix):
                continue
            files = [child] if child.is_file() else (p for p in child.rglob("*") if p.is_file())
            found += [ObjectInfo(str(p), p.stat().st_size, p.stat().st_mtime) for p in files]
        return sorted(found, key=lambda info: info.uri)

    def list_first(self, prefix_uri: str, limit: int) -> list[ObjectInfo]:
        """The first `limit` files of `list`, in key order (one bounded ListObjectsV2 on S3)."""
        return self.list(prefix_uri)[:limit]

    def read_bytes(self, uri: str) -> bytes:
        return self._path(uri).read_bytes()

    def read_tail(self, uri: str, length: int) -> bytes:
        with open(self._path(uri), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - length))
            return handle.read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        with self.open_writer(uri) as writer:
            writer.write(data)

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def stat(self, uri: str) -> ObjectInfo | None:
        """One object's size and modification time, or None if there is no such file."""
        path = self._path(uri)
        if not path.is_file():
            return None
        info = path.stat()
        return ObjectInfo(str(path), info.st_size, info.st_mtime)

    def delete(self, uri: str) -> None:
        self._path(uri).unlink(missing_ok=True)

    def move(self, source_uri: str, target_uri: str) -> None:
        target = self._path(target_uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self._path(source_uri)), str(target))

    def open_writer(self, uri: str) -> _AtomicLocalWriter:
        return _AtomicLocalWriter(self._path(uri))


class _MultipartWriter(Writer):
    """Streams an S3 object in parts; holds at most one part in memory."""

    def __init__(self, client, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self._parts: list[dict] = []
        self._buffer = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self._buffer += data
        if len(self._buffer) >= MULTIPART_PART_BYTES:
            self._flush()
        return len(data)

    def _flush(self) -> None:
        number = len(self._parts) + 1
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._buffer.clear()

    def close(self) -> None:
        if self._buffer or not self._parts:
            self._flush()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)


class S3Storage:
    def __init__(self, client=None, region: str | None = None) -> None:
        if client is None:
            import boto3

            # On an EMR node boto3 resolves no region by itself: without one it would use the global
            # endpoint, which a VPC with only an S3 gateway endpoint in another region cannot reach.
            client = boto3.client("s3", region_name=region)
        self._client = client

    def list(self, prefix_uri: str) -> list[ObjectInfo]:
        bucket, prefix = split_s3(prefix_uri)
        paginator = self._client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(ObjectInfo(f"s3://{bucket}/{item['Key']}", item["Size"], item["LastModified"].timestamp()))
        return found

    def list_first(self, prefix_uri: str, limit: int) -> list[ObjectInfo]:
        """The first `limit` keys under the prefix, in key order: one request (S3 returns at most 1000)."""
        bucket, prefix = split_s3(prefix_uri)
        response = self._client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=min(limit, 1000))
        return [
            ObjectInfo(f"s3://{bucket}/{item['Key']}", item["Size"], item["LastModified"].timestamp())
            for item in response.get("Contents", [])
        ]

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def read_tail(self, uri: str, length: int) -> bytes:
        bucket, key = split_s3(uri)
        return self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{length}")["Body"].read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = split_s3(uri)
        self._client.put_object(Bucket=bucket, Key=key, Body=data)

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3(uri)
        response = self._client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return response.get("KeyCount", 0) > 0

    def stat(self, uri: str) -> ObjectInfo | None:
        """One object's size and modification time (HeadObject), or None if there is no such key."""
        bucket, key = split_s3(uri)
        try:
            head = self._client.head_object(Bucket=bucket, Key=key)
        except self._client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(uri, head["ContentLength"], head["LastModified"].timestamp())

    def delete(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        self._client.delete_object(Bucket=bucket, Key=key)

    def move(self, source_uri: str, target_uri: str) -> None:
        source_bucket, source_key = split_s3(source_uri)
        target_bucket, target_key = split_s3(target_uri)
        self._client.copy_object(
            Bucket=target_bucket, Key=target_key, CopySource={"Bucket": source_bucket, "Key": source_key}
        )
        self._client.delete_object(Bucket=source_bucket, Key=source_key)

    def open_writer(self, uri: str) -> _MultipartWriter:
        bucket, key = split_s3(uri)
        return _MultipartWriter(self._client, bucket, key)


def storage_for(uri: str, s3_client=None, region: str | None = None) -> Storage:
    """The storage that serves `uri`: S3 for s3:// URIs, the local file system otherwise."""
    return S3Storage(s3_client, region) if is_s3(uri) else LocalStorage()
