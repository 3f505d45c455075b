"""The run's control, what the state machine's Lambdas do: plan it, take and release the lease,
assess a failed Spark step, verify what it committed, report it (and the runs that died before
their report), and the settings and typed contracts between those states.
"""
