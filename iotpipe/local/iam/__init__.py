"""IAM in the local run: the template's policies, evaluated for every AWS call the rehearsal makes.

- `policy`: a small IAM policy evaluator (Deny wins, Allow needed, wildcards, conditions).
- `stack`: template.yaml translated by aws-sam-translator and resolved in a local world.
- `enforce`: the wrappers that check each Lambda's and each integration's calls.
"""

from iotpipe.local.iam.enforce import (
    AuthorizedGlue,
    AuthorizedLeaseStore,
    AuthorizedStepFunctions,
    AuthorizedStorage,
    Authorizer,
    IntegrationAuthorizer,
    acting_as,
    authorized_runtime,
)
from iotpipe.local.iam.policy import Decision, Request, UnsupportedPolicy, evaluate
from iotpipe.local.iam.stack import Stack, World, load_stack, load_stacks, local_world

__all__ = [
    "AuthorizedGlue",
    "AuthorizedLeaseStore",
    "AuthorizedStepFunctions",
    "AuthorizedStorage",
    "Authorizer",
    "Decision",
    "IntegrationAuthorizer",
    "Request",
    "Stack",
    "UnsupportedPolicy",
    "World",
    "acting_as",
    "authorized_runtime",
    "evaluate",
    "load_stack",
    "load_stacks",
    "local_world",
]
