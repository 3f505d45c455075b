"""The lake: its tables (Gold, the quarantine, the seen-id store, the run history), the evidence
they keep (Iceberg snapshots, the Spark query's checkpoint) and where each lives.

Nothing here starts Spark: the Lambdas, `iotpipe query` and the tests read the same evidence.
"""
