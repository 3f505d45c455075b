"""Run the Spark job with a local spark-submit (`local[*]`), exactly as an EMR step would run it.

The same `spark/job.py` and arguments go to EMR through `addStep`; here they go to the
spark-submit that ships with PySpark, with this interpreter for the driver and the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import spark as spark_package
from iotpipe.lake.storage import join, storage_for
from iotpipe.local.jars import local_jars
from spark.progress import PROGRESS_SECONDS_CONF, TASKS_PREFIX

SPARK_DIR = Path(spark_package.__file__).resolve().parent
JOB_SCRIPT = SPARK_DIR / "job.py"
LOG_CONFIG = SPARK_DIR / "log4j2.properties"
FAULTS_JAR = Path(os.environ.get("IOTPIPE_FAULTS_JAR", SPARK_DIR.parent / "build" / "iotpipe-faults.jar"))
PROGRESS_PREFIX = "IOTPIPE_PROGRESS "
# More options for the driver's JVM of every local Spark application (the tests use the JVM's
# quick compiler alone, -XX:TieredStopAtLevel=1: their inputs are too small to repay C2's work).
JAVA_OPTIONS_ENV = "IOTPIPE_SPARK_JAVA_OPTIONS"
# Faults that halt the driver inside an Iceberg commit need the test-only FileIO (spark/faults/).
INSIDE_COMMIT_FAULTS = ("crash-mid-batch", "crash-inside-quarantine", "crash-inside-maintenance")


@dataclass
class SparkRun:
    exit_code: int
    summary: dict | None
    log_path: str

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def _pyspark_home() -> str:
    import pyspark

    return str(Path(pyspark.__file__).resolve().parent)


def local_submit_options(master: str = "local[*]", driver_memory: str = "2g", extra_jars: tuple = ()) -> list[str]:
    """spark-submit and the options every local Spark application here runs with: Iceberg's
    runtime and SQLite's JDBC driver are what EMR's own Iceberg and Glue are on AWS."""
    return [
        os.path.join(_pyspark_home(), "bin", "spark-submit"),
        "--master",
        master,
        "--driver-memory",
        driver_memory,
        "--jars",
        ",".join([*local_jars(), *extra_jars]),
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"{PROGRESS_SECONDS_CONF}=1",  # a live bar locally; the job's default (EMR) is 5 s
        "--conf",
        # The heap is taken whole up front, as a container's would be: memory is then set by
        # configuration, and a longer run does not look like a larger one.
        f"spark.driver.extraJavaOptions=-Dlog4j.configurationFile=file:{LOG_CONFIG} "
        f"{os.environ.get(JAVA_OPTIONS_ENV, '')} -Xms{driver_memory}",
    ]


def submit_command(
    job_argv: list[str], master: str = "local[*]", driver_memory: str = "2g", script: Path = JOB_SCRIPT
) -> list[str]:
    """A local spark-submit for the job (or table maintenance, spark/maintain.py) with these arguments
    (those an EMR step passes)."""
    fault = job_argv[job_argv.index("--fault") + 1] if "--fault" in job_argv else ""
    extra: tuple = ()
    if fault.split(":")[0] in INSIDE_COMMIT_FAULTS:
        if not FAULTS_JAR.exists():
            raise FileNotFoundError(
                f"fault injection needs {FAULTS_JAR}: `make test` builds it (make build/iotpipe-faults.jar)"
            )
        extra = (str(FAULTS_JAR),)
    return local_submit_options(master, driver_memory, extra) + [str(script), *job_argv]


def _argument(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def run_spark_job(
    job_argv: list[str],
    log_path: str,
    on_progress: Callable[[dict], None] | None = None,
    master: str = "local[*]",
    timeout: float | None = None,
    on_tasks: Callable[[dict], None] | None = None,
    script: Path = JOB_SCRIPT,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> SparkRun:
    """Run the job to completion (killed after `timeout` seconds, as a step past its Task's
    TimeoutSeconds is cancelled); stream its batch progress (`on_progress`, per batch done) and
    its task progress (`on_tasks`, within a batch); return exit code and run summary.

    spark-submit leads a process group of its own (its JVM and the job's Python driver), so a
    Ctrl-C at the terminal reaches the caller only, which stops the group (`on_start` hands it the
    process) in its own time: iotpipe.local.interrupt."""
    env = dict(os.environ)
    env.update(
        SPARK_HOME=_pyspark_home(),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PYTHONUNBUFFERED="1",
    )
    # A fault reaches the job only as an explicit --fault argument (the CLI fills it from IOTPIPE_FAULT).
    env.pop("IOTPIPE_FAULT", None)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            submit_command(job_argv, master, script=script),
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=str(SPARK_DIR.parent),
            start_new_session=True,
        )
        assert process.stdout is not None
        if on_start:
            on_start(process)
        deadline = threading.Timer(timeout, process.kill) if timeout else None
        if deadline:
            deadline.daemon = True
            deadline.start()
        for raw in process.stdout:
            log.write(raw)
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(PROGRESS_PREFIX) and on_progress:
                on_progress(json.loads(line[len(PROGRESS_PREFIX) :]))
            elif line.startswith(TASKS_PREFIX) and on_tasks:
                on_tasks(json.loads(line[len(TASKS_PREFIX) :]))
        exit_code = process.wait()
        if deadline:
            deadline.cancel()
    summary = read_run_summary(_argument(job_argv, "--checkpoint"), _argument(job_argv, "--run-id"))
    return SparkRun(exit_code, summary, log_path)


def read_run_summary(checkpoint: str, run_id: str) -> dict | None:
    """The summary the job wrote beside its checkpoint for `run_id`, or None if it wrote none."""
    uri = join(checkpoint, "runs", f"{run_id}.json")
    storage = storage_for(uri)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None
