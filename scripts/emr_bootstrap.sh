#!/usr/bin/env bash
# EMR bootstrap action of every transient cluster (the state machine's CreateCluster): install the
# Spark job's third-party modules, pinned in spark/requirements-emr.txt, into EMR's Python 3.9
# from the wheelhouse `make deploy` uploads beside the job, with no package index (a private
# subnet may have no route to one). `make deploy` uploads this script as
# s3://<ArtifactsBucket>/spark/bootstrap/install-job-dependencies.sh.
# Argument: the wheelhouse, s3://<ArtifactsBucket>/spark/wheels/ (its requirements.txt included).
set -euo pipefail
wheelhouse="${1:?usage: emr_bootstrap.sh s3://<bucket>/spark/wheels/}"
local_wheels="$(mktemp -d)"
aws s3 cp --recursive --only-show-errors "${wheelhouse%/}/" "${local_wheels}/"
sudo python3 -m pip install --quiet --no-index --find-links "${local_wheels}" -r "${local_wheels}/requirements.txt"
python3 -c 'import boto3, botocore; print("iotpipe job dependencies: boto3", boto3.__version__, "botocore", botocore.__version__)'
