package iotpipe.faults;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.mapreduce.JobContext;
import org.apache.spark.internal.io.FileCommitProtocol;
import org.apache.spark.sql.execution.streaming.ManifestFileCommitProtocol;
import org.apache.spark.sql.internal.SQLConf;

/**
 * Test-only file sink commit protocol: halts the driver JVM in the middle of a chosen batch,
 * after the batch's data files were written and before the sink logs them in _spark_metadata,
 * which is what a driver killed mid-batch leaves behind. It first waits (a minute at most) until
 * the driver recorded the previous batch of both sinks in the ledger, so the fault is only the
 * crash, not also the separate case of a committed batch that was never recorded. With
 * spark.iotpipe.fault.failBatch instead, the chosen batch fails (an exception, the driver lives)
 * on every attempt: a poison batch.
 */
public class CrashingCommitProtocol extends ManifestFileCommitProtocol {
    public static final String CRASH_BATCH_CONF = "spark.iotpipe.fault.crashBatch";
    public static final String FAIL_BATCH_CONF = "spark.iotpipe.fault.failBatch";
    public static final String LEDGER_CONF = "spark.iotpipe.fault.ledger";
    public static final int HALT_STATUS = 137;
    private static final String[] QUERIES = {"gold", "quarantine"};

    private final String batchId;

    public CrashingCommitProtocol(String jobId, String path) {
        super(jobId, path);
        this.batchId = jobId;
    }

    @Override
    public void commitJob(JobContext jobContext, scala.collection.Seq<FileCommitProtocol.TaskCommitMessage> taskCommits) {
        if (batchId.equals(SQLConf.get().getConfString(FAIL_BATCH_CONF, "-1"))) {
            // A poison batch: it fails the same way on every attempt, after its files were written.
            throw new IllegalStateException("iotpipe fault injection: batch " + batchId + " cannot be committed");
        }
        if (batchId.equals(SQLConf.get().getConfString(CRASH_BATCH_CONF, "-1"))) {
            awaitRecorded(jobContext.getConfiguration(), Long.parseLong(batchId) - 1);
            System.err.println("iotpipe fault injection: halting the driver in batch " + batchId
                    + " after its files were written, before the sink committed them");
            System.err.flush();
            Runtime.getRuntime().halt(HALT_STATUS);
        }
        super.commitJob(jobContext, taskCommits);
    }

    private static void awaitRecorded(Configuration conf, long batch) {
        String ledger = SQLConf.get().getConfString(LEDGER_CONF, "");
        if (batch < 0 || ledger.isEmpty()) {
            return;
        }
        long deadline = System.currentTimeMillis() + 60_000;
        try {
            for (String query : QUERIES) {
                Path entry = new Path(ledger + "/" + query + "/" + batch + ".json");
                FileSystem fs = entry.getFileSystem(conf);
                while (!fs.exists(entry) && System.currentTimeMillis() < deadline) {
                    Thread.sleep(100);
                }
            }
        } catch (Exception e) {
            System.err.println("iotpipe fault injection: could not wait for the ledger: " + e);
        }
    }
}
