"""Shared fixtures: one SparkSession for the whole run, with Iceberg and one local catalog."""

from __future__ import annotations

import os
import shutil
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


# ---------------------------------------------------------------- the suite over several processes
# `make test` runs two pytest-xdist workers. A module's tests run on one worker, in order, so its
# module fixtures are made once (tests/static's share one `sam build`); the executions of the
# fault matrix and of the state machine tests are independent and spread over both.
SPREAD = ("tests/orchestration/test_fault_matrix.py", "tests/orchestration/test_state_machine.py")


@pytest.hookimpl(optionalhook=True)  # pytest without xdist knows no such hook
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        """xdist's scheduling by scope, with the scopes above (xdist's documented way to choose them)."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            if module in SPREAD:
                return nodeid
            return "tests/static" if module.startswith("tests/static/") else module

    return ByModule(config, log)


def pytest_configure(config):
    from tests.suite_records import RECORDS_ENV

    if not hasattr(config, "workerinput"):  # the first process: its workers inherit the folder
        os.environ[RECORDS_ENV] = tempfile.mkdtemp(prefix="iotpipe-test-records-")


def whole_suite(config) -> bool:
    """Whether this session runs every test (as `make test` does): then the checks of the whole suite run."""
    option = config.option
    narrowed = (option.keyword, option.markexpr, option.deselect, option.ignore, option.ignore_glob,
                getattr(option, "lf", False), getattr(option, "stepwise", False), option.collectonly)  # fmt: skip
    return config.args_source == pytest.Config.ArgsSource.TESTPATHS and not any(narrowed)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """After every test passed: the state machine's coverage across the orchestration tests, and
    the fault matrix printed and found in docs/design.md (what the workers recorded)."""
    config = session.config
    if hasattr(config, "workerinput") or exitstatus != 0 or not whole_suite(config):
        return
    from tests.orchestration.harness import state_coverage
    from tests.orchestration.test_fault_matrix import matrix_check
    from tests.suite_records import RECORDS_ENV, read_records

    records = read_records(os.environ[RECORDS_ENV])
    coverage, missed = state_coverage(records["coverage"])
    matrix, problems = matrix_check(records["fault-matrix"])
    failures = [f"SUITE CHECK FAILED: {p}" for p in missed + problems]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in ("", matrix, coverage, *failures):
            reporter.write_line(line)
        if failures:
            reporter.write_sep("=", f"{len(failures)} suite checks failed (the tests above passed)", red=True)
    if failures:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    from tests.suite_records import RECORDS_ENV

    shutil.rmtree(os.path.dirname(SESSION_CATALOG.removeprefix("jdbc:sqlite:")), ignore_errors=True)
    if not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.pop(RECORDS_ENV, ""), ignore_errors=True)
