"""The AWS limits the local run enforces, each checked on its own against the documented rule."""

from __future__ import annotations

import pytest

from iotpipe.local import limits
from iotpipe.run.execution_names import bounded_execution_name
from iotpipe.run.models import ExecutionInput
from iotpipe.run.plan import follow_up_name
from iotpipe.run.settings import Settings
from iotpipe.run.trigger import execution_name


def test_a_state_payload_of_exactly_256_kib_passes_and_one_byte_more_fails():
    at_limit = "x" * (limits.MAX_STATE_PAYLOAD_BYTES - len('{"a":""}'))
    assert limits.json_size({"a": at_limit}) == 262_144
    limits.check_state_payload({"a": at_limit}, "S")
    with pytest.raises(limits.LimitExceeded) as caught:
        limits.check_state_payload({"a": at_limit + "x"}, "S")
    assert caught.value.error == "States.DataLimitExceeded"


def test_payload_size_counts_utf8_bytes_of_compact_json():
    assert limits.json_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    assert limits.json_size({"a": "é"}) == len('{"a":""}') + 2


@pytest.mark.parametrize("name", ["a", "x" * 80, "run-20261127T150822Z-9477", "bronze_2026.11.27-ü"])
def test_names_aws_accepts(name):
    assert limits.execution_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", "x" * 81, "a b", "a\tb", "a\u00a0b", *(f"a{c}b" for c in '<>{}[]?*"#%\\^|~`$&,;:/'), "a\x00b", "a\x1fb",
     "a\x7fb", "a\x9fb"],
)  # fmt: skip
def test_names_aws_refuses(name):
    with pytest.raises(limits.LimitExceeded) as caught:
        limits.check_execution_name(name)
    assert caught.value.error == "InvalidName"


def test_a_bounded_name_keeps_short_names_and_cuts_long_ones_deterministically():
    assert bounded_execution_name("run-1", "fu1") == "run-1-fu1"
    long_a, long_b = "a" * 79 + "1", "a" * 79 + "2"
    name_a = bounded_execution_name(long_a, "fu1")
    assert len(name_a) <= 80 and limits.execution_name_problem(name_a) is None
    assert name_a == bounded_execution_name(long_a, "fu1")
    assert name_a != bounded_execution_name(long_b, "fu1")


@pytest.mark.parametrize("first", ["run-20261127T150822Z-9477", "x" * 80, "bronze-20261126T081500Z-0123456789ab"])
def test_a_chain_of_follow_ups_keeps_every_name_valid_distinct_and_deterministic(first):
    names = [first]
    for _ in range(120):
        names.append(follow_up_name(names[-1]))
    assert all(limits.execution_name_problem(name) is None for name in names)
    assert len(set(names)) == len(names)
    assert follow_up_name(names[5]) == names[6]


def test_the_triggers_names_are_valid():
    name = execution_name(1_790_000_000, 60)
    assert limits.execution_name_problem(name) is None
    assert limits.execution_name_problem(bounded_execution_name(name, "0123456789ab")) is None


def test_sns_subject_and_message_rules():
    limits.check_sns_publish("iotpipe run SUCCEEDED", "{}")
    for subject in ("", "x" * 101, "line\nbreak", "naïve"):
        with pytest.raises(limits.LimitExceeded):
            limits.check_sns_publish(subject, "{}")
    with pytest.raises(limits.LimitExceeded):
        limits.check_sns_publish("s", "x" * (limits.MAX_SNS_MESSAGE_BYTES + 1))


def test_lambda_payloads_over_6_mb_are_refused():
    limits.check_lambda_payload({"a": "x" * 1000}, "request")
    with pytest.raises(limits.LimitExceeded, match="6291456"):
        limits.check_lambda_payload({"a": "x" * limits.MAX_LAMBDA_SYNC_PAYLOAD_BYTES}, "response")


def test_function_limits_come_from_the_template_globals_and_each_function():
    found = limits.function_limits()
    assert found["plan_run"] == limits.FunctionLimits(timeout_seconds=300, memory_mb=1024)
    assert found["start_from_bronze_events"].timeout_seconds == 60
    template = {
        "Globals": {"Function": {"Timeout": 10, "MemorySize": 256}},
        "Resources": {
            "F": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "functions/f/", "MemorySize": 512}}
        },
    }
    assert limits.function_limits(template) == {"f": limits.FunctionLimits(10, 512)}


@pytest.mark.parametrize(("first", "last", "step", "size"), [(0, 999, 1, 1000), (1, 9, 2, 5), (0, 2999, 3, 1000)])
def test_an_array_range_of_at_most_1000_items_passes(first, last, step, size):
    assert limits.array_range_size(first, last, step) == size
    limits.check_array_range(first, last, step)


def test_an_array_range_of_1001_items_fails_with_states_runtime():
    with pytest.raises(limits.LimitExceeded, match="1001 items") as caught:
        limits.check_array_range(0, 1000, 1)
    assert caught.value.error == "States.Runtime"


def test_every_shard_count_a_run_may_ask_for_fits_one_array_range():
    """The definition makes shard indexes 0..N-1 with States.ArrayRange: the template's
    DefaultShards, the settings read from it and the execution input's shards stop at its bound."""

    def upper_bound(field) -> int:
        return next(m.le for m in field.metadata if getattr(m, "le", None) is not None)

    template = limits._template()
    assert int(template["Parameters"]["DefaultShards"]["MaxValue"]) == limits.MAX_ARRAY_RANGE_ITEMS
    assert upper_bound(Settings.model_fields["default_shards"]) == limits.MAX_ARRAY_RANGE_ITEMS
    assert upper_bound(ExecutionInput.model_fields["shards"]) == limits.MAX_ARRAY_RANGE_ITEMS
