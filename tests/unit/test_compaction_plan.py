"""What a compaction merges: partitions with small files worth merging, with a bounded rewrite
of each row however many runs add to a partition."""

from __future__ import annotations

import json

import pytest

from iotpipe import compaction
from iotpipe.compaction import CompactionRefused, Merge, plan, swapped_lines, worth_merging
from iotpipe.storage import LocalStorage

SINK = "s3://gold/iot_transformed"
MiB = 1024 * 1024


def entry(partition: str, name: str, size: int) -> dict:
    path = f"{SINK}/{partition}/{name}".replace("%", "%25").replace(" ", "%20")
    return {"path": path, "size": size, "isDir": False, "modificationTime": 1, "blockReplication": 1,
            "blockSize": 33554432, "action": "add"}  # fmt: skip


def test_files_are_merged_when_the_others_make_a_quarter_of_the_largest():
    assert not worth_merging([MiB])
    assert worth_merging([MiB, MiB // 4])
    assert not worth_merging([MiB, MiB // 8])
    assert worth_merging([MiB, MiB // 8, MiB // 8])


def test_large_files_and_single_small_files_are_left_alone():
    entries = [
        entry("date=2026-11-20/location_city=Oslo", "a.parquet", 40 * MiB),
        entry("date=2026-11-20/location_city=Oslo", "b.parquet", 2 * MiB),
        entry("date=2026-11-20/location_city=Rome", "c.parquet", 1 * MiB),
        entry("date=2026-11-20/location_city=St. John%27s", "d.parquet", 1 * MiB),
        entry("date=2026-11-20/location_city=St. John%27s", "e.parquet", 1 * MiB),
    ]
    merges = plan(entries, SINK, 7)
    assert [m.partition for m in merges] == ["date=2026-11-20/location_city=St. John%27s"]
    assert [e["path"].rsplit("/", 1)[1] for e in merges[0].replaced] == ["d.parquet", "e.parquet"]
    assert merges[0].target.startswith(f"{SINK}/date=2026-11-20/location_city=St. John%27s/part-compacted-7-")


def test_a_merge_takes_the_smallest_files_up_to_the_merged_file_size():
    partition = "date=2026-11-20/location_city=Oslo"
    sizes = [30 * MiB] * 10
    merges = plan([entry(partition, f"{i}.parquet", s) for i, s in enumerate(sizes)], SINK, 1)
    assert sum(int(e["size"]) for e in merges[0].replaced) <= compaction.MERGED_FILE_BYTES
    assert len(merges[0].replaced) == compaction.MERGED_FILE_BYTES // (30 * MiB)


def feed(runs: int) -> tuple[float, int]:
    """One small file per run into one partition, compacted after each run: how many times each
    byte was rewritten on average, and the most files the partition held."""
    partition = "date=2026-11-20/location_city=Oslo"
    files, written, rewritten, most_files = [], 0, 0, 0
    for run in range(runs):
        files.append(entry(partition, f"run-{run}.parquet", 20 * 1024))
        written += 20 * 1024
        most_files = max(most_files, len(files))
        for merge in plan(files, SINK, run):
            size = sum(int(e["size"]) for e in merge.replaced)
            rewritten += size
            gone = {e["path"] for e in merge.replaced}
            files = [f for f in files if f["path"] not in gone] + [entry(partition, f"merged-{run}.parquet", size)]
    return rewritten / written, most_files


def test_a_partition_fed_by_many_runs_rewrites_each_byte_a_number_of_times_that_grows_with_the_log():
    """A day of runs every 15 minutes, then ten such days: ten times the runs, not ten times the rewrites."""
    day, ten_days = feed(96), feed(960)
    assert day[0] < 8 and ten_days[0] < 12, (day, ten_days)
    assert day[1] <= 8 and ten_days[1] <= 8


def test_the_swap_keeps_every_other_line_byte_for_byte_and_is_idempotent():
    partition = "date=2026-11-20/location_city=Oslo"
    lines = [json.dumps(entry(partition, f"{n}.parquet", 10), separators=(",", ":")) for n in "abc"]
    lines.append('{"path":"s3://gold/iot_transformed/date=2026-11-21/location_city=Rome/x.parquet","size":5}')
    merge = Merge(partition, [json.loads(lines[0]), json.loads(lines[2])], f"{SINK}/{partition}/m.parquet")
    merge.merged = entry(partition, "m.parquet", 20)
    swapped, done = swapped_lines(lines, [merge])
    assert not done and swapped[:2] == [lines[1], lines[3]] and json.loads(swapped[2]) == merge.merged
    assert swapped_lines(swapped, [merge]) == (swapped, True)


def test_a_log_listing_part_of_a_compaction_is_refused_not_guessed():
    partition = "date=2026-11-20/location_city=Oslo"
    lines = [json.dumps(entry(partition, f"{n}.parquet", 10)) for n in "ab"]
    merge = Merge(partition, [json.loads(lines[0]), json.loads(lines[1])], f"{SINK}/{partition}/m.parquet")
    merge.merged = entry(partition, "m.parquet", 20)
    with pytest.raises(CompactionRefused):
        swapped_lines(lines + [json.dumps(merge.merged)], [merge])


GOOD_JOURNAL = {"batch": 3, "merges": [], "written": True, "swapped": True, "files_after": {}, "files_as_of": 3,
                "pointed_as_of": None, "published_at": None, "previous_folders": {}}  # fmt: skip
CORRUPT_JOURNALS = [
    b"", b"{not json", b"\xff\xfe", b'{"batch": 3}', b"[]", b"7", b"null",
    *(json.dumps({**GOOD_JOURNAL, **change}).encode() for change in (
        {"batch": "3"}, {"batch": True}, {"previous_folders": None}, {"files_after": {"p": None}},
        {"published_at": "soon"}, {"merges": [1]}, {"merges": [{"partition": "p", "replaced": [{}], "target": "t"}]},
        {"extra": 1},
    )),
]  # fmt: skip


def test_a_good_journal_reads_back():
    assert compaction.Journal.from_json(GOOD_JOURNAL).to_json() == GOOD_JOURNAL


@pytest.mark.parametrize("text", CORRUPT_JOURNALS)
def test_an_unreadable_journal_is_named_in_the_error(tmp_path, text):
    sink = str(tmp_path / "gold")
    (tmp_path / "gold" / "_compaction" / "journal").mkdir(parents=True)
    (tmp_path / "gold" / "_compaction" / "journal" / "3.json").write_bytes(text)
    with pytest.raises(compaction.UnreadableJournal, match=r"journal .*3\.json cannot be read"):
        compaction.pending_journals(LocalStorage(), sink)


def published_journal(tmp_path, replaced_file, published_at: float) -> tuple[str, compaction.Journal]:
    sink = str(tmp_path / "gold")
    partition = "date=2024-05-01/location_city=Oslo"
    merge = Merge(partition, [{"path": replaced_file.as_uri(), "size": 1}], f"{sink}/{partition}/merged.parquet")
    journal = compaction.Journal(3, [merge], written=True, swapped=True, files_as_of=3, pointed_as_of=3,
                                 published_at=published_at)  # fmt: skip
    compaction.save(LocalStorage(), sink, journal)
    return sink, journal


def test_replaced_files_are_kept_for_the_grace_period_and_the_report_says_until_when(tmp_path):
    small = tmp_path / "gold" / "date=2024-05-01" / "location_city=Oslo" / "part-0.parquet"
    small.parent.mkdir(parents=True)
    small.write_bytes(b"x")
    sink, _ = published_journal(tmp_path, small, published_at=1000.0)
    kept = compaction.publish_pending(LocalStorage(), sink, lambda moves: None, now=1000.0 + 60)
    assert kept.deletions_due == {3: 1000.0 + compaction.GRACE_SECONDS} and small.exists()
    done = compaction.publish_pending(LocalStorage(), sink, lambda moves: None, now=1000.0 + compaction.GRACE_SECONDS)
    assert done.cleaned == [3] and done.deleted == 1 and not small.exists()
    assert compaction.pending_journals(LocalStorage(), sink) == []


def test_a_journal_naming_files_outside_its_sink_deletes_nothing(tmp_path):
    # A lake copied with its journals: the sink log's absolute paths name the original lake.
    original = tmp_path / "original" / "date=2024-05-01" / "location_city=Oslo" / "part-0.parquet"
    original.parent.mkdir(parents=True)
    original.write_bytes(b"x")
    sink, _ = published_journal(tmp_path / "copy", original, published_at=1000.0)
    with pytest.raises(CompactionRefused, match="outside its sink"):
        compaction.publish_pending(LocalStorage(), sink, lambda moves: None, now=1000.0 + compaction.GRACE_SECONDS)
    assert original.exists()
