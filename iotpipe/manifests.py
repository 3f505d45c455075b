"""Symlink manifests: each sink partition's committed files, which is all Athena reads of it.

Athena reads every object under a partition's location: the files of a batch still being
written, and those a crashed attempt left until VerifyGold moves them aside. So the Gold and
quarantine tables are symlink tables (`SymlinkTextInputFormat`, as Delta Lake publishes to
Athena): a partition's location is a folder under `<sink>/_symlink_format_manifest/` holding one
object, `manifest`, that lists the partition's committed files, one URI per line.

VerifyGold adds the files of its window to their partitions' manifests before it records the
window as verified: one PUT per partition, so a reader sees the list before or after, never part
of it, and a crash before the end leaves the window to be verified, and added, again (adding is
a set union: twice is once). A manifest is read, merged and written back, so only one writer may
do it at a time: the run that holds the lease while no Spark driver writes, the proof VerifyGold
already takes before it moves files. A run without that proof leaves a note, and the next run
with it adds the files. One object per partition is also what lets a later rewrite (merged files
in place of small ones) reach Athena in one PUT. Each URI is the file's real key, not the sink
log's percent-encoded spelling, since Hadoop's `Path` encodes what it is given.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Mapping

from iotpipe.storage import Storage, join

MANIFEST_FOLDER = "_symlink_format_manifest"
MANIFEST_NAME = "manifest"
WITHHELD_DIR = "manifests-withheld"


def manifest_folder(sink_uri: str, partition: str) -> str:
    """Where the catalog points a partition (`date=.../location_city=...`) of the sink."""
    return join(sink_uri, MANIFEST_FOLDER, partition)


def manifest_uri(sink_uri: str, partition: str) -> str:
    return join(manifest_folder(sink_uri, partition), MANIFEST_NAME)


def listed_files(storage: Storage, sink_uri: str, partition: str) -> list[str]:
    """What Athena reads of a partition: the lines of its manifest."""
    uri = manifest_uri(sink_uri, partition)
    if storage.stat(uri) is None:
        return []
    return [line for line in storage.read_bytes(uri).decode("utf-8").split("\n") if line]


def add_to_manifests(storage: Storage, sink_uri: str, files_by_partition: Mapping[str, Iterable[str]]) -> int:
    """Add committed files to their partitions' manifests; the number of manifests written."""
    written = 0
    for partition, uris in sorted(files_by_partition.items()):
        added = set(uris)
        broken = sorted(uri for uri in added if "\n" in uri or "\r" in uri)
        if broken:  # a city with a control character never reaches Gold; this would split a line
            raise ValueError(f"a file URI with a line break cannot be listed in a manifest: {broken[0]!r}")
        listed = listed_files(storage, sink_uri, partition)
        merged = sorted(added.union(listed))
        if merged != listed:
            storage.write_bytes(manifest_uri(sink_uri, partition), "".join(f"{uri}\n" for uri in merged).encode())
            written += 1
    return written


def publish(
    storage: Storage,
    runs_uri: str,
    run_id: str,
    files: Mapping[str, tuple[str, Mapping[str, Iterable[str]]]],
    sole_writer: Callable[[], bool],
) -> dict[str, int]:
    """Add each sink's files (`files`: query -> (sink URI, files by partition)), and those earlier
    runs had to leave, to the manifests if `sole_writer()` proves no one else writes them now;
    otherwise leave a note of them. Manifests written per query (0 for all when withheld)."""
    notes = [info.uri for info in storage.list(join(runs_uri, WITHHELD_DIR) + "/") if info.uri.endswith(".json")]
    pending = {query: (sink, files_by) for query, (sink, files_by) in files.items() if files_by}
    if not (pending or notes):
        return {query: 0 for query in files}
    if not sole_writer():
        for query, (sink, files_by) in pending.items():
            note = {"sink": sink, "files": {p: sorted(uris) for p, uris in files_by.items()}}
            storage.write_bytes(join(runs_uri, WITHHELD_DIR, f"{run_id}-{query}.json"), json.dumps(note).encode())
        return {query: 0 for query in files}
    written = {query: add_to_manifests(storage, sink, files_by) for query, (sink, files_by) in files.items()}
    for uri in notes:
        note = json.loads(storage.read_bytes(uri))
        add_to_manifests(storage, note["sink"], note["files"])
        storage.delete(uri)
    return written
