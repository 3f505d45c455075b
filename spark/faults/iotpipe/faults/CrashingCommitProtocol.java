package iotpipe.faults;

import org.apache.hadoop.mapreduce.JobContext;
import org.apache.spark.internal.io.FileCommitProtocol;
import org.apache.spark.sql.execution.streaming.ManifestFileCommitProtocol;
import org.apache.spark.sql.internal.SQLConf;

/**
 * Test-only file sink commit protocol: halts the driver JVM in the middle of a chosen batch,
 * after the batch's data files were written and before the sink logs them in _spark_metadata,
 * which is what a driver killed mid-batch leaves behind.
 */
public class CrashingCommitProtocol extends ManifestFileCommitProtocol {
    public static final String CRASH_BATCH_CONF = "spark.iotpipe.fault.crashBatch";
    public static final int HALT_STATUS = 137;

    private final String batchId;

    public CrashingCommitProtocol(String jobId, String path) {
        super(jobId, path);
        this.batchId = jobId;
    }

    @Override
    public void commitJob(JobContext jobContext, scala.collection.Seq<FileCommitProtocol.TaskCommitMessage> taskCommits) {
        if (batchId.equals(SQLConf.get().getConfString(CRASH_BATCH_CONF, "-1"))) {
            System.err.println("iotpipe fault injection: halting the driver in batch " + batchId
                    + " after its files were written, before the sink committed them");
            System.err.flush();
            Runtime.getRuntime().halt(HALT_STATUS);
        }
        super.commitJob(jobContext, taskCommits);
    }
}
