package iotpipe.faults;

import org.apache.iceberg.hadoop.HadoopFileIO;
import org.apache.iceberg.io.OutputFile;

/**
 * Test-only Iceberg FileIO: halts the driver JVM inside a table's commit, after the batch's data
 * files and manifests were written and before the new metadata file (and so the catalog's
 * pointer) exists, which is what a driver killed mid-commit leaves behind. The job arms it for
 * one table and batch by setting the system property below to that table's location just before
 * the append (spark/job.py, fault crash-mid-batch and crash-inside-quarantine).
 */
public class CrashingFileIO extends HadoopFileIO {
    public static final String ARMED_PROPERTY = "iotpipe.fault.crashInsideCommitOf";
    public static final int HALT_STATUS = 137;

    @Override
    public OutputFile newOutputFile(String path) {
        String table = System.getProperty(ARMED_PROPERTY);
        if (table != null && path.contains(table + "/metadata/") && path.endsWith(".metadata.json")) {
            System.err.println("iotpipe fault injection: halting the driver inside the commit of " + table
                    + ", its data files and manifests written, its metadata not");
            System.err.flush();
            Runtime.getRuntime().halt(HALT_STATUS);
        }
        return super.newOutputFile(path);
    }
}
