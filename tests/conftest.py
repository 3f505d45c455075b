"""Shared fixtures: one SparkSession for the whole run, with Iceberg and one local catalog."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Every Spark test's tables live in this one catalog file, each test in a database of its own
# (Spark keeps a catalog once made, so the session has one, whatever lake a test builds).
SESSION_CATALOG = "jdbc:sqlite:" + os.path.join(tempfile.mkdtemp(prefix="iotpipe-catalog-"), "iceberg.db")
# Each local spark-submit the tests start (the job's, maintenance's: a JVM living well under a
# minute) compiles with the JIT's quick tier only, which makes a local run of the job about a
# quarter shorter; programs behave the same under either compiler. The shared session below
# lives for the whole run and keeps the optimising compiler (it is faster with it).
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def class_archive_option() -> str:
    """The JVM option that maps `make test`'s class-data archive of this Spark's classes, if made."""
    import pyspark

    major = pyspark.__version__.split(".")[0]
    archive = Path(__file__).resolve().parents[1] / "build" / "jvm-classes" / f"spark-{major}.jsa"
    return f"-XX:SharedArchiveFile={archive}" if archive.exists() else ""


os.environ.setdefault("IOTPIPE_SPARK_JAVA_OPTIONS", f"{QUICK_JIT} {class_archive_option()}".strip())


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession shared by every Spark test (starting one costs seconds)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from iotpipe.local.jars import local_jars
    from spark.tables import catalog_conf, session_extensions

    builder = (
        SparkSession.builder.master("local[2]")
        .appName("iotpipe-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.legacy.timeParserPolicy", "CORRECTED")
        .config("spark.jars", ",".join(local_jars()))
    )
    for key, value in {**session_extensions(), **catalog_conf(SESSION_CATALOG, "file:/tmp")}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def pytest_report_header(config):
    import pyspark

    return f"pyspark {pyspark.__version__} (the job's Spark tests run on it)"
