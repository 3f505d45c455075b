"""What the job's Bronze reading costs, step by step: one SparkSession (`local[2]`, as the job's),
one generated Bronze, each variant in turn, each as often as `--repeat` says:

    python -m bench.parse_profile --size 256MiB --repeat 3

- read: the lines, every byte touched (the sum of their lengths);
- from_json: Spark's parse of every line, nothing else;
- parse_lines: the job's parse (spark.transforms.parse_lines), with the reasons the job counts
  its batch by (with_reasons), as the job's first Spark job does, without keeping the batch;
- without ...: the same with one rule (or the strict-JSON checks together) replaced by what
  costs nothing (`false`, the value as it is, a plain cast): what that rule costs per row;
- name filter: the read with the job's filter on `_metadata.file_name`.

Prints each variant's median seconds and its spread, and apart from them the seconds the driver
took to build the variant's DataFrame (the job builds its plan once a run); docs/design.md
quotes them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from unittest import mock

from generator.shards import DatasetPlan, write_dataset
from iotpipe.run.sizes import parse_size


def variants(spark, bronze: str) -> dict:
    from pyspark.sql import functions as F

    from iotpipe.lake.bronze import SPARK_NAME_PATTERN
    from spark import transforms
    from spark.schema import EVENT_SCHEMA

    def lines():  # the generator's objects, as the job finds them (recursively)
        return spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.jsonl").text(bronze)

    def parsed_count():
        return lines().select(F.from_json("value", EVENT_SCHEMA).alias("r")).where("r is not null").groupBy().count()

    def total_length(frame):
        return frame.agg(F.sum(F.length("value")))

    def by_reason(frame):
        return transforms.with_reasons(transforms.parse_lines(frame)).groupBy("reason").count()

    def without(**replacements):
        """The job's parse with some of its functions replaced (what they cost)."""

        def run():
            with mock.patch.multiple(transforms, **replacements):
                return by_reason(lines())

        return run

    never = mock.Mock(return_value=F.lit(False))
    return {
        "read": lambda: total_length(lines()),
        "name filter": lambda: total_length(lines().where(F.col("_metadata.file_name").rlike(SPARK_NAME_PATTERN))),
        "from_json": parsed_count,
        "parse_lines": lambda: by_reason(lines()),
        "without the strict-JSON checks": without(has_trailing_content=never, has_duplicate_key=never,
                                                  event_id_not_string=never),
        "without trailing content": without(has_trailing_content=never),
        "without duplicate keys": without(has_duplicate_key=never),
        "without the id's type": without(event_id_not_string=never),
        "without the UTF-8 check": without(is_valid_utf8=mock.Mock(return_value=F.lit(True))),
        "without NFC composition": without(compose_marks=lambda text: text),
        "without city rules": without(normalise_city=lambda city: city, unusable_city=never),
        "numbers: a cast alone": without(_number=lambda path: F.expr(f"try_cast({path} AS DOUBLE)")),
        "times: Spark's default parser": without(parse_event_time=lambda text: F.try_to_timestamp(text)),
        "file name: no decoding": without(source_file=F.input_file_name),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256MiB", help="Bronze size (default 256MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant, in turn (default 3)")
    parser.add_argument("--work", default="bench-data/parse-profile", help="scratch folder (emptied)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    write_dataset(
        DatasetPlan(out=str(work / "bronze"), seed=42, size_bytes=parse_size(args.size), shard_count=2), processes=2
    )

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    builders = variants(spark, str(work / "bronze"))
    for build in builders.values():  # the first touch of the files, the JIT's and codegen's warm-up: no variant's
        build().collect()
    seconds: dict[str, list[float]] = {name: [] for name in builders}
    building: dict[str, list[float]] = {name: [] for name in builders}
    for repeat in range(args.repeat):
        for name, build in list(builders.items())[:: 1 if repeat % 2 == 0 else -1]:
            started = time.perf_counter()
            frame = build()
            built = time.perf_counter()
            frame.collect()
            building[name].append(built - started)
            seconds[name].append(time.perf_counter() - built)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.size}, {args.repeat} runs of each in turn (median s, spread, runs; then the median s to build it):")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:32} {median:7.1f}  {(max(values) - min(values)) / median:4.0%}  "
              f"{[round(v, 1) for v in values]}  build {statistics.median(building[name]):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
