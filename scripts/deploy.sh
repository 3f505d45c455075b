#!/usr/bin/env bash
# Deploy iotpipe to an AWS account: `make deploy` (after `make sam-build`).
# Needs: AWS credentials, the AWS CLI, a Docker engine (for the generator image).
# Every step before the first AWS call also runs here without an account: see `make sam-build`.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK="${STACK:-iotpipe}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:?set AWS_REGION}}"
SAM="${SAM:-.venv-sam/bin/sam}"
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
REPOSITORY="${STACK}-generator"
IMAGE="${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${REPOSITORY}:$(git rev-parse --short HEAD)"

echo "1/4 generator image -> ${IMAGE}"
aws ecr describe-repositories --repository-names "${REPOSITORY}" --region "${REGION}" >/dev/null 2>&1 \
  || aws ecr create-repository --repository-name "${REPOSITORY}" --region "${REGION}" \
       --image-scanning-configuration scanOnPush=true >/dev/null
aws ecr get-login-password --region "${REGION}" \
  | docker login --username AWS --password-stdin "${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com"
docker build -f generator/Dockerfile -t "${IMAGE}" .
docker push "${IMAGE}"

echo "2/4 stack ${STACK} (first time: answer the guided prompts for SubnetId and VpcId)"
if [ -f samconfig.toml ]; then
  "${SAM}" deploy --stack-name "${STACK}" --region "${REGION}" --capabilities CAPABILITY_IAM \
    --resolve-s3 --parameter-overrides "GeneratorImageUri=${IMAGE}" ${SAM_PARAMETERS:-}
else
  "${SAM}" deploy --guided --stack-name "${STACK}" --region "${REGION}" --capabilities CAPABILITY_IAM \
    --parameter-overrides "GeneratorImageUri=${IMAGE}"
fi

output() {
  aws cloudformation describe-stacks --stack-name "${STACK}" --region "${REGION}" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
ARTIFACTS="$(output ArtifactsBucketName)"

echo "3/4 Spark job -> s3://${ARTIFACTS}/spark/"
rm -rf build/spark-package && mkdir -p build/spark-package
cp -r spark build/spark-package/ && rm -rf build/spark-package/spark/faults
mkdir -p build/spark-package/iotpipe && cp iotpipe/__init__.py iotpipe/lease.py iotpipe/bronze.py build/spark-package/iotpipe/
(cd build/spark-package && find . -name __pycache__ -prune -exec rm -rf {} + && zip -qr ../iotpipe_spark.zip spark iotpipe)
aws s3 cp spark/job.py "s3://${ARTIFACTS}/spark/job.py"
aws s3 cp build/iotpipe_spark.zip "s3://${ARTIFACTS}/spark/iotpipe_spark.zip"

echo "4/4 done. Start a run:"
echo "  aws stepfunctions start-execution --state-machine-arn $(output StateMachineArn) --input '{}'"
