"""The local spark-submit command: the job's heap is fixed at start and fault injection ships its jar."""

from __future__ import annotations

from iotpipe.spark_submit import FAULTS_JAR, JOB_SCRIPT, submit_command


def _option(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, part in enumerate(command) if part == name]


def test_the_driver_heap_is_taken_whole_at_start():
    command = submit_command(["--bronze", "b"], driver_memory="1g")
    assert _option(command, "--driver-memory") == ["1g"]
    java_options = [c for c in _option(command, "--conf") if c.startswith("spark.driver.extraJavaOptions=")]
    assert len(java_options) == 1 and java_options[0].split()[-1] == "-Xms1g"


def test_the_job_and_its_arguments_come_last():
    command = submit_command(["--bronze", "b", "--gold", "g"])
    assert command[-5:] == [str(JOB_SCRIPT), "--bronze", "b", "--gold", "g"]
    assert "--jars" not in command


def test_a_crash_fault_ships_the_fault_jar():
    command = submit_command(["--bronze", "b", "--fault", "crash-mid-batch:2"])
    assert _option(command, "--jars") == [str(FAULTS_JAR)]
