"""What the job's Bronze reading costs, step by step: one SparkSession (`local[2]`, as the job's),
one generated Bronze, each variant in turn, each as often as `--repeat` says:

    python -m bench.parse_profile --size 256MiB --repeat 3

- read: the lines, every byte touched (the sum of their lengths);
- from_json: Spark's parse of every line, nothing else;
- parse_lines: the job's parse (spark.transforms.parse_lines), with the reasons the job counts
  its batch by (with_reasons), as the job's first Spark job does, without keeping the batch;
- parse_lines, not strict: the same with the strict-JSON checks Spark's parser does not make
  (a second tokenizer pass for the keys, the regular expressions on braces, the id that is not a
  string) replaced by `false`: what those checks cost;
- parse_lines, no NFC composition: the same with city names not composed (what composing costs);
- name filter: the read with the job's filter on `_metadata.file_name`.

Prints each variant's median seconds and its spread; docs/design.md quotes them.
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
        return lines().select(F.from_json("value", EVENT_SCHEMA).alias("r")).where("r is not null").count()

    def total_length(frame):
        return frame.agg(F.sum(F.length("value"))).collect()

    def by_reason(frame):
        return transforms.with_reasons(transforms.parse_lines(frame)).groupBy("reason").count().collect()

    def lenient():
        never = mock.Mock(return_value=F.lit(False))
        with mock.patch.multiple(
            transforms, has_trailing_content=never, has_duplicate_key=never, event_id_not_string=never
        ):
            return by_reason(lines())

    def without_composition():
        with mock.patch.object(transforms, "compose_marks", side_effect=lambda text: text):
            return by_reason(lines())

    return {
        "read": lambda: total_length(lines()),
        "name filter": lambda: total_length(lines().where(F.col("_metadata.file_name").rlike(SPARK_NAME_PATTERN))),
        "from_json": parsed_count,
        "parse_lines": lambda: by_reason(lines()),
        "parse_lines, not strict": lenient,
        "parse_lines, no NFC composition": without_composition,
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
    runs = variants(spark, str(work / "bronze"))
    for run in runs.values():  # the first touch of the files, the JIT's and codegen's warm-up: no variant's
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeat):
        for name, run in list(runs.items())[:: 1 if repeat % 2 == 0 else -1]:
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.size}, {args.repeat} runs of each in turn (median s, spread):")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"  {name:26} {median:7.1f}  {(max(values) - min(values)) / median:4.0%}  {[round(v, 1) for v in values]}"
        )


if __name__ == "__main__":
    main()
