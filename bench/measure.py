"""Run one command and report its wall time and peak resident memory (largest process) as JSON."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

if __name__ == "__main__":
    started = time.perf_counter()
    # The command's stderr goes to IOTPIPE_BENCH_LOG (if set), to say why a run failed; its stdout
    # to IOTPIPE_BENCH_STDOUT (if set), where a job prints its per-batch progress lines.
    log, stdout = os.environ.get("IOTPIPE_BENCH_LOG"), os.environ.get("IOTPIPE_BENCH_STDOUT")
    with open(log or os.devnull, "wb") as errors, open(stdout or os.devnull, "wb") as output:
        code = subprocess.run(sys.argv[1:], stdout=output, stderr=errors).returncode
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"exit_code": code, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))
