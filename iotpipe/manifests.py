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

import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from iotpipe.storage import Storage, join

MANIFEST_FOLDER = "_symlink_format_manifest"
# Gold compaction's own folder under the sink (iotpipe.compaction): its journals and its pointers.
COMPACTION_FOLDER = "_compaction"


def manifest_folder(sink_uri: str, partition: str) -> str:
    """Where the catalog points a partition (`date=.../location_city=...`) of the sink."""
    return join(sink_uri, MANIFEST_FOLDER, partition)


# A compaction's record of where a partition's manifests go (absent: the usual folder).
def location_pointer(sink_uri: str, partition: str) -> str:
    return join(sink_uri, COMPACTION_FOLDER, "locations", partition)


@dataclass(frozen=True)
class Location:
    """Where a partition's manifests are: `folder`, whose compaction manifest lists its files up to
    batch `as_of`; and, while the compaction is being published, `previous`, the folder the
    catalog may still name."""

    folder: str
    as_of: int = -1
    previous: Optional[str] = None

    def folders_for(self, batch: int) -> list[str]:
        """The folders a batch's manifest goes to: a batch the compaction manifest lists is not
        listed again beside it; until the catalog has moved, the old folder gets it too."""
        folders = [self.folder] if batch > self.as_of else []
        return folders + ([self.previous] if self.previous else [])


def location_now(storage: Storage, sink_uri: str, partition: str) -> Location:
    pointer = location_pointer(sink_uri, partition)
    if storage.stat(pointer) is None:
        return Location(manifest_folder(sink_uri, partition))
    return Location(**json.loads(storage.read_bytes(pointer)))


def write_location(storage: Storage, sink_uri: str, partition: str, location: Location) -> None:
    storage.write_bytes(location_pointer(sink_uri, partition), json.dumps(location.__dict__).encode())


def manifest_folder_now(storage: Storage, sink_uri: str, partition: str) -> str:
    """The folder the catalog names for a partition once its compaction is published: the usual
    one, or the last compaction's."""
    return location_now(storage, sink_uri, partition).folder


def write_manifests(
    storage: Storage,
    sink_uri: str,
    files: Mapping[tuple[str, int], Iterable[str]],
    moving: Optional[Mapping[str, Location]] = None,
) -> int:
    """One manifest per (partition, batch), listing the files the batch committed there, in the
    partition's folders (`Location.folders_for`): those of a compaction being published
    (`moving`, iotpipe.compaction.moving_locations), else its pointer's; the count."""
    locations: dict[str, Location] = dict(moving or {})
    for (partition, batch), uris in sorted(files.items()):
        if partition not in locations:
            locations[partition] = location_now(storage, sink_uri, partition)
        listed = "".join(f"{uri}\n" for uri in sorted(set(uris)))
        for folder in locations[partition].folders_for(batch):
            storage.write_bytes(join(folder, f"batch-{batch}"), listed.encode())
    return len(files)


def listed_files(storage: Storage, sink_uri: str, partition: str) -> list[str]:
    """What Athena reads of a partition: every line of every object in its manifest folder."""
    listed = []
    for info in storage.list(manifest_folder_now(storage, sink_uri, partition) + "/"):
        listed += [line for line in storage.read_bytes(info.uri).decode("utf-8").split("\n") if line]
    return sorted(listed)
