#!/usr/bin/env bash
# Deploy iotpipe to an AWS account: `make deploy` (after `make sam-build`).
# Needs: AWS credentials, the AWS CLI, a Docker engine (for the generator image).
# Every step before the first AWS call also runs here without an account: see `make sam-build`.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK="${STACK:-iotpipe}"
# Names derived from it must be lowercase: the ECR repository's, the Glue database's by default.
if ! [[ "${STACK}" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "ERROR: STACK=${STACK}: use lowercase letters, digits and hyphens, starting with a letter" >&2
  exit 1
fi
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:?set AWS_REGION}}"
SAM="${SAM:-.venv-sam/bin/sam}"
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
REPOSITORY="${STACK}-generator"
IMAGE="${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${REPOSITORY}:$(git rev-parse --short HEAD)"

echo "0/4 service-linked roles (once per account): EMR's cleanup role, EMR Serverless's, ECS's for task networking"
ensure_service_linked_role() {
  aws iam get-role --role-name "$1" >/dev/null 2>&1 || aws iam create-service-linked-role --aws-service-name "$2" >/dev/null
}
ensure_service_linked_role AWSServiceRoleForEMRCleanup elasticmapreduce.amazonaws.com
ensure_service_linked_role AWSServiceRoleForAmazonEMRServerless ops.emr-serverless.amazonaws.com
ensure_service_linked_role AWSServiceRoleForECS ecs.amazonaws.com

echo "1/4 generator image -> ${IMAGE}"
aws ecr describe-repositories --repository-names "${REPOSITORY}" --region "${REGION}" >/dev/null 2>&1 \
  || aws ecr create-repository --repository-name "${REPOSITORY}" --region "${REGION}" \
       --image-scanning-configuration scanOnPush=true >/dev/null
aws ecr get-login-password --region "${REGION}" \
  | docker login --username AWS --password-stdin "${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com"
# Built for the task definition's platform (GeneratorTaskDefinition RuntimePlatform: X86_64, LINUX)
# whatever the host; an image of another architecture fails on Fargate with an exec format error.
docker build --platform linux/amd64 -f generator/Dockerfile -t "${IMAGE}" .
built_architecture="$(docker image inspect --format '{{.Architecture}}' "${IMAGE}")"
if [ "${built_architecture}" != "amd64" ]; then
  echo "ERROR: the generator image is ${built_architecture}, the task definition runs amd64 (X86_64); not pushed" >&2
  exit 1
fi
docker push "${IMAGE}"

echo "2/4 stack ${STACK} (first time: answer the guided prompts for SubnetId and VpcId)"
if [ -f samconfig.toml ]; then
  "${SAM}" deploy --stack-name "${STACK}" --region "${REGION}" --capabilities CAPABILITY_IAM \
    --resolve-s3 --parameter-overrides "GeneratorImageUri=${IMAGE}" ${SAM_PARAMETERS:-}
else
  "${SAM}" deploy --guided --stack-name "${STACK}" --region "${REGION}" --capabilities CAPABILITY_IAM \
    --parameter-overrides "GeneratorImageUri=${IMAGE}" ${SAM_PARAMETERS:-}
fi

output() {
  aws cloudformation describe-stacks --stack-name "${STACK}" --region "${REGION}" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
parameter() {
  aws cloudformation describe-stacks --stack-name "${STACK}" --region "${REGION}" \
    --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text
}
ARTIFACTS="$(output ArtifactsBucketName)"

# On EMR on EC2, AmazonEMRServicePolicy_v2 launches clusters only into a subnet, and creates its
# managed security groups only in a VPC, tagged for-use-with-amazon-emr-managed-policies=true.
# EMR Serverless needs no tag.
SUBNET="$(parameter SubnetId)"
VPC="$(parameter VpcId)"
EMR_TAG="for-use-with-amazon-emr-managed-policies"
TAGGED_FOR_EMR="${SUBNET} ${VPC}"
if [ "$(parameter SparkRuntime)" = "emr-serverless" ]; then TAGGED_FOR_EMR=""; fi
for resource in ${TAGGED_FOR_EMR}; do
  tagged="$(aws ec2 describe-tags --region "${REGION}" --filters "Name=resource-id,Values=${resource}" \
    "Name=key,Values=${EMR_TAG}" --query "Tags[0].Value" --output text)"
  if [ "${tagged}" != "true" ]; then
    echo "WARNING: ${resource} is not tagged ${EMR_TAG}=true: EMR cannot launch the Spark cluster there." >&2
    echo "  aws ec2 create-tags --region ${REGION} --resources ${resource} --tags Key=${EMR_TAG},Value=true" >&2
  fi
done

echo "3/4 Spark job -> s3://${ARTIFACTS}/spark/"
.venv/bin/python -m iotpipe.spark_package build/iotpipe_spark.zip >/dev/null
aws s3 cp spark/job.py "s3://${ARTIFACTS}/spark/job.py"
aws s3 cp spark/maintain.py "s3://${ARTIFACTS}/spark/maintain.py"
aws s3 cp build/iotpipe_spark.zip "s3://${ARTIFACTS}/spark/iotpipe_spark.zip"
# Its third-party modules (spark/requirements-emr.txt): for EMR on EC2 the wheels (`make
# spark-wheels`) and the bootstrap action that installs them on every node of a transient cluster;
# for EMR Serverless the same modules installed and archived (`make spark-deps-archive`).
[ -f build/iotpipe_spark_deps.tar.gz ] || make --no-print-directory spark-deps-archive
aws s3 sync --delete build/spark-wheels "s3://${ARTIFACTS}/spark/wheels/"
aws s3 cp scripts/emr_bootstrap.sh "s3://${ARTIFACTS}/spark/bootstrap/install-job-dependencies.sh"
aws s3 cp build/iotpipe_spark_deps.tar.gz "s3://${ARTIFACTS}/spark/iotpipe_spark_deps.tar.gz"

echo "4/4 done. Start a run:"
echo "  aws stepfunctions start-execution --state-machine-arn $(output StateMachineArn) --input '{}'"
