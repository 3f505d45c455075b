"""The S3-event trigger: a burst of events starts one run, a busy lease is marked instead, and
names are deterministic per window (moto for SQS, DynamoDB and Step Functions)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from iotpipe.local.bindings import LocalLambdaContext
from iotpipe.run import lambda_runtime
from iotpipe.run.lease_store import DynamoDBLeaseStore
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import classify_keys, decide, execution_name

CONTEXT = LocalLambdaContext(function_name="start_from_bronze_events", aws_request_id="test")
EVENT = json.loads((Path(__file__).parent.parent / "events" / "s3_object_created.json").read_text())


def object_event(key: str) -> dict:
    event = json.loads(json.dumps(EVENT))
    event["detail"]["object"]["key"] = key
    return event


@pytest.fixture
def aws(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName="leases",
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="pipeline",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/x",
        )["stateMachineArn"]
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="bronze-events")["QueueUrl"]
        settings = Settings.for_local_lake(str(tmp_path), lease_store="dynamodb://leases", state_machine_arn=machine)
        lambda_runtime.configure(settings)
        lambda_runtime.clients["stepfunctions"] = sfn
        yield {"sfn": sfn, "machine": machine, "sqs": sqs, "queue": queue, "dynamodb": dynamodb, "settings": settings}
        lambda_runtime.clients.pop("stepfunctions", None)


def drain_queue_as_one_batch(sqs, queue: str) -> dict:
    """What the SQS event source hands the function after its batching window."""
    records = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in records]}
        records.extend(messages)


def test_a_burst_of_200_objects_starts_exactly_one_run(aws):
    from functions.start_from_bronze_events.app import lambda_handler

    for i in range(200):
        aws["sqs"].send_message(
            QueueUrl=aws["queue"], MessageBody=json.dumps(object_event(f"raw/up/part-{i:04d}.jsonl"))
        )
    batch = drain_queue_as_one_batch(aws["sqs"], aws["queue"])
    assert len(batch["Records"]) == 200
    first = lambda_handler(batch, CONTEXT)
    redelivered = lambda_handler(batch, CONTEXT)
    assert first["action"] == "start" and first["objects"] == 200
    assert redelivered["name"] == first["name"]
    executions = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    assert len(executions) == 1 and executions[0]["name"] == first["name"]


def test_events_while_a_run_holds_the_lease_mark_it_pending_instead_of_starting(aws):
    from functions.start_from_bronze_events.app import lambda_handler

    leases = DynamoDBLeaseStore("leases", aws["dynamodb"])
    assert leases.acquire("bronze-to-gold", "running-run", 600)
    result = lambda_handler({"Records": [{"body": json.dumps(object_event("raw/seed-1/part-00001.jsonl"))}]}, CONTEXT)
    assert result["action"] == "pending"
    assert leases.get("bronze-to-gold").pending
    assert aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"] == []


def test_only_data_objects_under_the_raw_prefix_count():
    events = [
        object_event("raw/seed-1/part-00001.jsonl"),
        object_event("raw/_manifests/seed-1/shard-0000.json"),
        object_event("raw/seed-1/.part-00002.jsonl.inprogress"),
        object_event("exports/x.jsonl"),
        {"source": "aws.s3", "detail-type": "Object Deleted", "detail": {"object": {"key": "raw/a.jsonl"}}},
    ]
    assert classify_keys(events)[0] == ["raw/seed-1/part-00001.jsonl"]


def test_nothing_new_starts_nothing(aws):
    leases = DynamoDBLeaseStore("leases", aws["dynamodb"])
    assert decide([], leases, "bronze-to-gold", 60).action == "ignore"


def test_names_are_one_per_window():
    assert execution_name(1_800_000_010, 60) == execution_name(1_800_000_059, 60) != execution_name(1_800_000_061, 60)


def records_of(*keys: str) -> dict:
    return {"Records": [{"body": json.dumps(object_event(key))} for key in keys]}


def test_objects_the_job_will_not_read_start_no_run(aws):
    """(The next run's job notes them for its report: tests/spark/test_bronze_objects.py.)"""
    from functions.start_from_bronze_events.app import lambda_handler

    only_ignored = lambda_handler(records_of("raw/up/notes.txt", "raw/up/.hidden.jsonl"), CONTEXT)
    assert only_ignored["action"] == "ignore"
    assert aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"] == []
    mixed = lambda_handler(records_of("raw/up/firehose-1.gz", "raw/up/with space.JSONL", "raw/up/x.csv"), CONTEXT)
    assert mixed["action"] == "start" and mixed["objects"] == 2


def test_classification_follows_the_bronze_read_rule():
    keys, ignored = classify_keys(
        [object_event(k) for k in ("raw/a/b.ndjson.gz", "raw/_tmp/c.jsonl", "raw/d.parquet", "raw/e+f%20.jsonl")]
    )
    assert keys == ["raw/a/b.ndjson.gz", "raw/e+f%20.jsonl"]
    assert ignored == {"raw/_tmp/c.jsonl": "hidden", "raw/d.parquet": "other-format"}
