"""scripts/deploy.sh builds what the template runs: the generator image for the platform of the
task definition (an image of another architecture fails on Fargate with an exec format error),
checked before it is pushed. Static: there is no Docker engine here to build with."""

from __future__ import annotations

import re
from pathlib import Path

from iotpipe.local.iam.stack import parse_template

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "scripts" / "deploy.sh"
DOCKER_ARCHITECTURES = {"X86_64": "amd64", "ARM64": "arm64"}  # ECS CpuArchitecture -> Docker's name


def task_platform() -> tuple[str, str]:
    """(os, architecture) of the generator's task definition, as Docker names them."""
    template = parse_template((ROOT / "template.yaml").read_text())
    platform = template["Resources"]["GeneratorTaskDefinition"]["Properties"]["RuntimePlatform"]
    return platform["OperatingSystemFamily"].lower(), DOCKER_ARCHITECTURES[platform["CpuArchitecture"]]


def test_the_generator_image_is_built_for_the_task_definitions_platform():
    builds = re.findall(r"^docker build .*$", DEPLOY.read_text(), re.MULTILINE)
    assert len(builds) == 1
    platform = re.search(r"--platform[ =](\S+)", builds[0])
    assert platform is not None and platform.group(1) == "/".join(task_platform())


def test_the_built_images_architecture_is_checked_before_it_is_pushed():
    script = DEPLOY.read_text()
    build, push = script.find("docker build"), script.find("docker push")
    inspect = script.find("docker image inspect --format '{{.Architecture}}'")
    assert 0 <= build < inspect < push
    check = script[inspect:push]
    assert f'!= "{task_platform()[1]}" ]' in check and "exit 1" in check


def test_every_sam_deploy_passes_the_users_parameter_overrides_the_first_one_too():
    """`SAM_PARAMETERS="SparkRuntime=emr-serverless" make deploy` on a first, guided deploy must not
    silently deploy the default runtime."""
    deploys = [line for line in re.split(r"(?<!\\)\n", DEPLOY.read_text()) if '"${SAM}" deploy' in line]
    assert len(deploys) == 2
    assert all("${SAM_PARAMETERS:-}" in deploy for deploy in deploys), deploys
