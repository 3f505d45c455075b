"""Symlink manifests: each sink partition's committed files, which is all Athena reads of it.

Athena reads every object under a partition's location: the files of a batch still being
written, and those a crashed attempt left until VerifyGold moves them aside. So the Gold and
quarantine tables are symlink tables (`SymlinkTextInputFormat`, as Delta Lake publishes to
Athena): a partition's location is a folder under `<sink>/_symlink_format_manifest/`, and every
object in it is a manifest, one file URI per line.

VerifyGold writes one manifest per partition and committed batch, `batch-<n>`, listing the files
that batch committed there, before it records the window as verified. Its content is fixed by
the sink log, so writing it again, or from two verifications at once, writes the same bytes:
nothing is read or merged, no writer can lose another's files, and the work is the window's,
whatever the history. A batch's files appear to Athena at once (one PUT per partition), and a
crash before the window is recorded leaves it to be verified, and written, again. Each URI is
the file's real key, not the sink log's percent-encoded spelling, since Hadoop's `Path` encodes
what it is given.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from iotpipe.storage import Storage, join

MANIFEST_FOLDER = "_symlink_format_manifest"


def manifest_folder(sink_uri: str, partition: str) -> str:
    """Where the catalog points a partition (`date=.../location_city=...`) of the sink."""
    return join(sink_uri, MANIFEST_FOLDER, partition)


def manifest_uri(sink_uri: str, partition: str, batch: int) -> str:
    return join(manifest_folder(sink_uri, partition), f"batch-{batch}")


def write_manifests(storage: Storage, sink_uri: str, files: Mapping[tuple[str, int], Iterable[str]]) -> int:
    """One manifest per (partition, batch), listing the files the batch committed there; the count."""
    for (partition, batch), uris in sorted(files.items()):
        listed = "".join(f"{uri}\n" for uri in sorted(set(uris)))
        storage.write_bytes(manifest_uri(sink_uri, partition, batch), listed.encode())
    return len(files)


def listed_files(storage: Storage, sink_uri: str, partition: str) -> list[str]:
    """What Athena reads of a partition: every line of every object in its manifest folder."""
    listed = []
    for info in storage.list(manifest_folder(sink_uri, partition) + "/"):
        listed += [line for line in storage.read_bytes(info.uri).decode("utf-8").split("\n") if line]
    return sorted(listed)
