"""Where a Spark application's time went: each job's start, length and stages, from its event log.

Any spark-submit here (`iotpipe transform`, `iotpipe run`, the bench's jobs) writes an event
log when its Spark configuration folder asks for one:

    mkdir -p spark-conf spark-events
    printf 'spark.eventLog.enabled true\\nspark.eventLog.dir file://%s/spark-events\\n' "$PWD" \\
        > spark-conf/spark-defaults.conf
    SPARK_CONF_DIR=$PWD/spark-conf .venv/bin/iotpipe transform --bronze ... --gold ... \\
        --quarantine ... --checkpoint ...
    .venv/bin/python -m bench.stages spark-events/local-*

The figures in docs/design.md ("Where a batch's time goes") were read this way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def jobs_of(event_log: Path) -> tuple[list[dict], float]:
    """The application's jobs in order (start and length in seconds from the application's
    start, each stage's name, seconds and task count), and the application's length."""
    jobs: dict[int, dict] = {}
    stages: dict[int, tuple[str, float, int]] = {}
    started = ended = 0.0
    for line in event_log.read_text().splitlines():
        event = json.loads(line)
        kind = event["Event"]
        if kind == "SparkListenerApplicationStart":
            started = event["Timestamp"]
        elif kind == "SparkListenerApplicationEnd":
            ended = event["Timestamp"]
        elif kind == "SparkListenerJobStart":
            jobs[event["Job ID"]] = {
                "start_ms": event["Submission Time"],
                "stage_ids": [stage["Stage ID"] for stage in event["Stage Infos"]],
            }
        elif kind == "SparkListenerJobEnd":
            jobs[event["Job ID"]]["end_ms"] = event["Completion Time"]
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            seconds = (info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000
            stages[info["Stage ID"]] = (info["Stage Name"].split(" at ")[0], seconds, info["Number of Tasks"])
    listed = []
    for job_id, job in sorted(jobs.items()):
        listed.append(
            {
                "job": job_id,
                "at_s": round((job["start_ms"] - started) / 1000, 1),
                "seconds": round((job.get("end_ms", job["start_ms"]) - job["start_ms"]) / 1000, 1),
                # Stages skipped because an earlier job computed them never complete: not listed.
                "stages": [stages[s] for s in job["stage_ids"] if s in stages],
            }
        )
    return listed, (ended - started) / 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("event_log", type=Path)
    args = parser.parse_args(argv)
    jobs, seconds = jobs_of(args.event_log)
    print(f"application: {seconds:.1f} s, {len(jobs)} jobs")
    for job in jobs:
        stages = ", ".join(f"{name} {s:.1f} s/{tasks} tasks" for name, s, tasks in job["stages"])
        print(f"job {job['job']:4d} at {job['at_s']:7.1f} s: {job['seconds']:6.1f} s  [{stages}]")


if __name__ == "__main__":
    main()
