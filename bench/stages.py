"""Where a Spark application's time went: each job's start, length and stages, from its event log.

Any spark-submit here (`iotpipe transform`, `iotpipe run`, the bench's jobs) writes an event
log when its Spark configuration folder asks for one:

    mkdir -p spark-conf spark-events
    printf 'spark.eventLog.%s\\n' 'enabled true' 'compress false' "dir file://$PWD/spark-events" \\
        > spark-conf/spark-defaults.conf
    SPARK_CONF_DIR=$PWD/spark-conf .venv/bin/iotpipe transform --bronze ... --gold ... \\
        --quarantine ... --checkpoint ...
    .venv/bin/python -m bench.stages spark-events/local-*      # one or more logs

The figures in docs/design.md ("Where a batch's time goes") were read this way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def jobs_of(event_log: Path) -> tuple[list[dict], float]:
    """The application's jobs in order (start and length in seconds from the application's
    start, each stage's name, seconds and task count), and the application's length."""
    jobs: dict[int, dict] = {}
    stages: dict[int, tuple[str, float, int]] = {}
    started = ended = latest = 0.0
    for number, line in enumerate(event_log.read_text(errors="replace").splitlines(), 1):
        try:
            event = json.loads(line)
            kind = event["Event"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{event_log}: line {number} is not a Spark event (an uncompressed event log?)") from None
        if kind == "SparkListenerApplicationStart":
            started = event["Timestamp"]
        elif kind == "SparkListenerApplicationEnd":
            ended = event["Timestamp"]
        elif kind == "SparkListenerJobStart":
            jobs[event["Job ID"]] = {
                "start_ms": event["Submission Time"],
                "stage_ids": [stage["Stage ID"] for stage in event["Stage Infos"]],
            }
        elif kind == "SparkListenerJobEnd" and event["Job ID"] in jobs:
            jobs[event["Job ID"]]["end_ms"] = event["Completion Time"]
            latest = max(latest, event["Completion Time"])
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            seconds = (info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000
            stages[info["Stage ID"]] = (info["Stage Name"].split(" at ")[0], seconds, info["Number of Tasks"])
    if not started:
        raise ValueError(f"{event_log}: no application start: not a Spark event log")
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
    # A log still being written (or of an application that died) has no end: up to its last job.
    return listed, ((ended or latest or started) - started) / 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("event_logs", type=Path, nargs="+", metavar="event_log")
    args = parser.parse_args(argv)
    for event_log in args.event_logs:
        try:
            jobs, seconds = jobs_of(event_log)
        except (OSError, ValueError) as error:
            print(f"bench.stages: {error}", file=sys.stderr)
            sys.exit(2)
        print(f"{event_log}: {seconds:.1f} s, {len(jobs)} jobs")
        for job in jobs:
            stages = ", ".join(f"{name} {s:.1f} s/{tasks} tasks" for name, s, tasks in job["stages"])
            print(f"job {job['job']:4d} at {job['at_s']:7.1f} s: {job['seconds']:6.1f} s  [{stages}]")


if __name__ == "__main__":
    main()
