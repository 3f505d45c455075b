"""PlanRun's logic: defaults for `{}`, the S3 trigger, and input rejected before any side effect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotpipe.models import InvalidExecutionInput
from iotpipe.planning import parse_execution_input, plan_run
from iotpipe.settings import Settings
from iotpipe.storage import LocalStorage

EVENTS = Path(__file__).parent.parent / "events"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.for_local_lake(
        str(tmp_path),
        spark_job_uri="s3://artifacts/spark/job.py",
        spark_py_files_uri="s3://artifacts/spark/iotpipe_spark.zip",
    )


def test_an_empty_input_plans_a_generating_run_with_the_default_size(settings):
    plan = plan_run({}, "exec-1", settings, LocalStorage())
    assert plan.generate and plan.trigger == "console"
    assert plan.generation.shards == settings.default_shards
    assert plan.generation.last_index == settings.default_shards - 1
    command = plan.generation.command(0)
    assert command[command.index("--size") + 1] == str(256 * 2**20)
    assert plan.transient_cluster and plan.cluster_id is None


def test_the_spark_step_runs_the_job_from_s3_with_its_package(settings):
    args = plan_run({}, "exec-1", settings, LocalStorage()).attempt.step_args
    job = args.index("s3://artifacts/spark/job.py")
    assert args[:job] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--conf",
        "spark.yarn.maxAppAttempts=1",
        "--py-files",
        "s3://artifacts/spark/iotpipe_spark.zip",
    ]
    assert args[args.index("--run-id") + 1] == "exec-1-attempt-1"
    assert args[args.index("--gold") + 1] == settings.gold_uri


def test_the_seed_follows_the_execution_name_so_a_repeated_name_repeats_the_data(settings):
    first = plan_run({}, "exec-1", settings, LocalStorage())
    again = plan_run({}, "exec-1", settings, LocalStorage())
    other = plan_run({}, "exec-2", settings, LocalStorage())
    assert first.generation == again.generation and first.generation.seed != other.generation.seed


def test_an_s3_object_created_event_processes_existing_bronze_without_generating(settings):
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    plan = plan_run(event, "exec-3", settings, LocalStorage())
    assert (plan.trigger, plan.generate, plan.generation) == ("s3-event", False, None)


def test_a_test_fault_reaches_the_first_attempt_only(settings):
    plan = plan_run({"fault_injection": "crash-mid-batch:1"}, "exec-4", settings, LocalStorage())
    assert "crash-mid-batch:1" in plan.attempt.step_args


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ({"size": "huge"}, "size"),
        ({"shards": 0}, "shards"),
        ({"max_resume_attempts": 9}, "max_resume_attempts"),
        ({"cluster_id": "cluster-1"}, "cluster_id"),
        ({"generate": "sometimes"}, "generate"),
        ({"typo": 1}, "typo"),
        ({"size": "1KiB", "shards": 4}, "under 1 MiB"),
        ("{}", "JSON object"),
        ({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}, "detail-type"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_the_problem(settings, tmp_path, raw, fragment):
    with pytest.raises(InvalidExecutionInput, match=fragment):
        plan_run(raw, "exec-5", settings, LocalStorage())
    assert list(tmp_path.iterdir()) == []


def test_every_problem_is_listed_at_once():
    with pytest.raises(InvalidExecutionInput) as caught:
        parse_execution_input({"size": "huge", "shards": -1})
    assert "size" in str(caught.value) and "shards" in str(caught.value)
