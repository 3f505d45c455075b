"""The local stand-in for an AWS account: its account id, region, and the names `iotpipe run`
gives the state machine's functions (the DefinitionSubstitutions' `${...FunctionArn}` keys).

Both the local engine (iotpipe.local.runner) and the IAM rehearsal (iotpipe.local.iam) read it,
so neither imports the other for it.
"""

from __future__ import annotations

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTIONS = {
    "PlanRunFunctionArn": "plan_run",
    "AssessStepFailureFunctionArn": "assess_step_failure",
    "VerifyGoldFunctionArn": "verify_gold",
    "ReportStatusFunctionArn": "report_status",
    "AcquireLeaseFunctionArn": "acquire_lease",
    "ReleaseLeaseFunctionArn": "release_lease",
}
