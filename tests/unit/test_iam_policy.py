"""The local IAM evaluator on its own: Deny wins, Allow is needed, wildcards and conditions."""

from __future__ import annotations

import pytest

from iotpipe.local.iam import Request, UnsupportedPolicy, evaluate

BUCKET = "arn:aws:s3:::lake"


def allow(action, resource, condition=None, sid="A") -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    return {**statement, "Condition": condition} if condition else statement


def test_a_request_no_statement_allows_is_implicitly_denied():
    decision = evaluate([allow("s3:GetObject", f"{BUCKET}/a/*")], Request("s3:PutObject", f"{BUCKET}/a/x"))
    assert not decision.allowed and decision.reason == "implicit deny"


def test_an_explicit_deny_wins_over_any_allow():
    statements = [allow("s3:*", "*"), {"Sid": "D", "Effect": "Deny", "Action": "s3:DeleteObject",
                                        "Resource": f"{BUCKET}/_spark_metadata/*"}]  # fmt: skip
    decision = evaluate(statements, Request("s3:DeleteObject", f"{BUCKET}/_spark_metadata/0"))
    assert (decision.allowed, decision.reason, decision.statement) == (False, "explicit deny", "D")
    assert evaluate(statements, Request("s3:DeleteObject", f"{BUCKET}/data/0")).allowed


def test_actions_match_case_insensitively_with_wildcards_resources_case_sensitively():
    statements = [allow("S3:Get*", f"{BUCKET}/Runs/*")]
    assert evaluate(statements, Request("s3:getobject", f"{BUCKET}/Runs/r.json")).allowed
    assert not evaluate(statements, Request("s3:GetObject", f"{BUCKET}/runs/r.json")).allowed
    assert not evaluate([allow("s3:Get?bject", "*")], Request("s3:GetObjects", "x")).allowed


def test_not_action_and_not_resource_invert_the_match():
    statements = [{"Effect": "Allow", "NotAction": "s3:Delete*", "NotResource": f"{BUCKET}/spark/*"}]
    assert evaluate(statements, Request("s3:PutObject", f"{BUCKET}/runs/a")).allowed
    assert not evaluate(statements, Request("s3:DeleteObject", f"{BUCKET}/runs/a")).allowed
    assert not evaluate(statements, Request("s3:PutObject", f"{BUCKET}/spark/job.py")).allowed


def test_string_like_on_the_list_prefix_scopes_a_listing():
    statements = [allow("s3:ListBucket", BUCKET, {"StringLike": {"s3:prefix": ["raw", "raw/*"]}})]
    assert evaluate(statements, Request("s3:ListBucket", BUCKET, {"s3:prefix": "raw"})).allowed
    assert evaluate(statements, Request("s3:ListBucket", BUCKET, {"s3:prefix": "raw/seed-1/"})).allowed
    assert not evaluate(statements, Request("s3:ListBucket", BUCKET, {"s3:prefix": "spark/"})).allowed
    assert not evaluate(statements, Request("s3:ListBucket", BUCKET)).allowed  # no prefix: the whole bucket


def test_arn_equals_compares_arns_and_a_missing_key_fails_the_condition():
    cluster = "arn:aws:ecs:us-east-1:1:cluster/ours"
    statements = [allow("ecs:RunTask", "*", {"ArnEquals": {"ecs:cluster": cluster}})]
    assert evaluate(statements, Request("ecs:RunTask", "td", {"ecs:cluster": cluster})).allowed
    assert not evaluate(statements, Request("ecs:RunTask", "td", {"ecs:cluster": cluster + "x"})).allowed
    assert not evaluate(statements, Request("ecs:RunTask", "td")).allowed
    like = [allow("ecs:RunTask", "*", {"ArnLike": {"ecs:cluster": "arn:aws:ecs:*:1:cluster/*"}})]
    assert evaluate(like, Request("ecs:RunTask", "td", {"ecs:cluster": cluster})).allowed


def test_tag_conditions_allow_only_resources_carrying_the_tag():
    condition = {"StringEquals": {"elasticmapreduce:ResourceTag/iotpipe-stack": "iotpipe"}}
    statements = [allow("elasticmapreduce:AddJobFlowSteps", "*", condition)]
    tagged = {"elasticmapreduce:ResourceTag/iotpipe-stack": "iotpipe"}
    assert evaluate(statements, Request("elasticmapreduce:AddJobFlowSteps", "c", tagged)).allowed
    other = {"elasticmapreduce:ResourceTag/iotpipe-stack": "someone-else"}
    assert not evaluate(statements, Request("elasticmapreduce:AddJobFlowSteps", "c", other)).allowed
    assert not evaluate(statements, Request("elasticmapreduce:AddJobFlowSteps", "c")).allowed


def test_negated_if_exists_bool_and_null_operators_follow_aws_semantics():
    not_equals = [allow("s3:GetObject", "*", {"StringNotEquals": {"aws:ResourceTag/env": "prod"}})]
    assert evaluate(not_equals, Request("s3:GetObject", "o")).allowed  # key absent: negated operator holds
    if_exists = [allow("s3:GetObject", "*", {"StringEqualsIfExists": {"aws:ResourceTag/env": "dev"}})]
    assert evaluate(if_exists, Request("s3:GetObject", "o")).allowed
    assert not evaluate(if_exists, Request("s3:GetObject", "o", {"aws:ResourceTag/env": "prod"})).allowed
    tls = [allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]  # fmt: skip
    assert evaluate(tls, Request("s3:GetObject", "o", {"aws:SecureTransport": "true"})).allowed
    assert not evaluate(tls, Request("s3:GetObject", "o", {"aws:SecureTransport": "false"})).allowed
    null = [allow("s3:GetObject", "*", {"Null": {"aws:RequestTag/owner": "false"}})]
    assert evaluate(null, Request("s3:GetObject", "o", {"aws:RequestTag/owner": "me"})).allowed
    assert not evaluate(null, Request("s3:GetObject", "o")).allowed


@pytest.mark.parametrize(
    "condition",
    [
        {"NumericLessThan": {"s3:max-keys": "10"}},
        {"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}},
        {"StringEquals": {"aws:PrincipalTag/team": "${aws:username}"}},
    ],
)
def test_a_condition_the_evaluator_does_not_understand_is_refused_not_allowed(condition):
    with pytest.raises(UnsupportedPolicy):
        evaluate([allow("s3:GetObject", "*", condition)], Request("s3:GetObject", "o", {"s3:max-keys": "5"}))


def test_a_statement_element_the_evaluator_does_not_know_is_refused():
    with pytest.raises(UnsupportedPolicy):
        evaluate([{**allow("s3:GetObject", "*"), "Conditions": {}}], Request("s3:GetObject", "o"))
