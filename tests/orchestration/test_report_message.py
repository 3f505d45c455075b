"""The run report as SNS delivers it: a one-line summary an operator reads first, a blank line,
then the report as JSON. The real definition and handlers on the local engine, the generator and
the Spark step bound to fakes (no processes); the local SNS binding enforces SNS's limits."""

from __future__ import annotations

import json
from pathlib import Path

from iotpipe.local.runner import DEFINITION, LocalEngine
from iotpipe.run.settings import Settings


def test_the_published_message_is_the_summary_line_then_the_report_as_json(tmp_path: Path):
    # Given a run whose generator and Spark step are fakes, with the published messages recorded
    published = []

    def no_processes(bindings) -> None:
        bindings.run_generator = lambda command: 0
        bindings.run_spark_step = lambda args, step_id: (True, {})

    settings = Settings.for_local_lake(str(tmp_path), spark_job_uri=str(DEFINITION.parent.parent / "spark" / "job.py"),
                                       lease_wait_seconds=1)  # fmt: skip
    on_event = lambda kind, detail: published.append(detail) if kind == "report" else None  # noqa: E731

    # When the run ends
    with LocalEngine(str(tmp_path), settings, on_event=on_event, customise=no_processes) as engine:
        execution = engine.wait(engine.start({"generate": False}, name="report-message"))

    # Then one message was published: the summary line, a blank line, the report
    assert len(published) == 1
    summary, blank, body = published[0]["message"].split("\n", 2)
    report = execution.report
    assert blank == "" and json.loads(body) == report
    assert summary == report["message"]
    assert summary.startswith(f"iotpipe run {report['run_id']}: {report['status']} - input ")
    execution_arn = "arn:aws:states:us-east-1:123456789012:execution:iotpipe-pipeline:report-message"
    assert summary.endswith(
        f" - https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{execution_arn}"
    )
    assert ", in " in summary and published[0]["subject"] == f"iotpipe run {report['status']}"
