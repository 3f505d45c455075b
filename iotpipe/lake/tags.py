"""The snapshot properties the Spark job puts on its commits, and that the evidence reads back.

Every commit of a batch carries the streaming query's id and the batch id; Gold's and the
quarantine's carry the batch's input rows, Gold's its valid rows and the duplicates it dropped
(counted where they were dropped); the seen-id store's, the batch's last commit, carries the run
the batch belongs to and its execution. Table maintenance tags its commits too.

Python 3.9 syntax: the Spark job ships this module to EMR.
"""

QUERY_ID = "iotpipe.query-id"
BATCH_ID = "iotpipe.batch-id"
INPUT_ROWS = "iotpipe.input-rows"
VALID_ROWS = "iotpipe.valid-rows"
DUPLICATES = "iotpipe.duplicates"
BATCH_STARTED_MS = "iotpipe.batch-started-ms"
GOLD_SNAPSHOT = "iotpipe.gold-snapshot-id"
# On the seen-id store's commit, the last of a batch: the run the batch belongs to (its report).
RUN_ID = "iotpipe.run-id"
EXECUTION = "iotpipe.execution"
# Set on the commits of table maintenance (spark/maintain.py): rewrites and expiry, no new rows.
MAINTENANCE = "iotpipe.maintenance"
