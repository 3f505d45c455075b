"""bench.stages reads where an application's time went from a Spark event log."""

import json

from bench.stages import jobs_of


def test_jobs_are_listed_with_their_completed_stages(tmp_path):
    events = [
        {"Event": "SparkListenerApplicationStart", "Timestamp": 1_000},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 2_000, "Stage Infos": [{"Stage ID": 0}]},
        {
            "Event": "SparkListenerStageCompleted",
            "Stage Info": {
                "Stage ID": 0,
                "Stage Name": "addBatch at NativeMethodAccessorImpl.java:0",
                "Number of Tasks": 9,
                "Submission Time": 2_100,
                "Completion Time": 5_100,
            },
        },
        {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": 5_200},
        # A job whose only stage was computed by an earlier job: skipped, never completed.
        {"Event": "SparkListenerJobStart", "Job ID": 1, "Submission Time": 5_300, "Stage Infos": [{"Stage ID": 1}]},
        {"Event": "SparkListenerJobEnd", "Job ID": 1, "Completion Time": 5_400},
        {"Event": "SparkListenerApplicationEnd", "Timestamp": 6_000},
    ]
    log = tmp_path / "local-1"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    jobs, seconds = jobs_of(log)
    assert seconds == 5.0
    assert jobs == [
        {"job": 0, "at_s": 1.0, "seconds": 3.2, "stages": [("addBatch", 3.0, 9)]},
        {"job": 1, "at_s": 4.3, "seconds": 0.1, "stages": []},
    ]


def test_a_log_still_being_written_ends_at_its_last_job_and_other_files_are_refused(tmp_path, capsys):
    import pytest

    from bench.stages import main

    events = [
        {"Event": "SparkListenerApplicationStart", "Timestamp": 1_000},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 2_000, "Stage Infos": []},
        {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": 4_000},
    ]
    running = tmp_path / "local-2.inprogress"
    running.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert jobs_of(running)[1] == 3.0
    readme = tmp_path / "README.md"
    readme.write_text("# not an event log\n")
    for bad in (readme, tmp_path / "missing", tmp_path):
        with pytest.raises(SystemExit) as exit_:
            main([str(running), str(bad)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("bench.stages: ") and len(err.strip().splitlines()) == 1, err
