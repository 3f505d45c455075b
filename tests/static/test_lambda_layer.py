"""The shared layer is built for Lambda's platform (x86_64, CPython 3.13) from any host, and
carries boto3 and botocore at pyproject's versions, matching each other.

`sam build` runs the Makefile's `build-SharedLayer`; what it built is read back (the build the
static tests share, tests/static/conftest.py): the ELF header of every native library, the tags of
every wheel pip chose, the dist-info of boto3 and botocore.
"""

from __future__ import annotations

import re
from email.parser import Parser
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.static.test_static_checks import ROOT

# What Lambda's python3.13 runtime is (template.yaml: Globals Runtime and Architectures).
PYTHON_TAG = "cp313"
EM_X86_64 = 62  # e_machine of an x86-64 ELF object
RUNTIME_GLIBC_MINOR = 34  # the python3.13 runtime runs on Amazon Linux 2023 (glibc 2.34)
LAYER_PIP_FLAGS = ("--platform manylinux2014_x86_64", "--implementation cp", "--python-version 3.13")


@pytest.fixture(scope="module")
def layer(sam_build) -> Path:
    return sam_build / "SharedLayer" / "python"


def recipe(target: str) -> str:
    """The Makefile's recipe of `target`, with the Makefile's own variables expanded."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^([A-Z0-9_]+) :?= (.*)$", text, re.MULTILINE))
    body = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE).group(1)
    return re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), body)


def test_the_layer_recipe_asks_pip_for_lambdas_platform_and_binary_wheels_only():
    layer_recipe = recipe("build-SharedLayer")
    install = next(line for line in layer_recipe.splitlines() if "pip install" in line)
    assert all(flag in install for flag in LAYER_PIP_FLAGS) and "--only-binary=:all:" in install
    assert "python3.13" not in layer_recipe  # no local Lambda interpreter needed


def elf_machine(path: Path) -> int | None:
    """e_machine of an ELF file, None if the file is not ELF (little-endian, as x86-64 is)."""
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def test_every_native_library_in_the_layer_is_x86_64_elf(layer):
    libraries = [p for p in layer.rglob("*") if p.is_file() and re.search(r"\.so(\.|$)", p.name)]
    assert libraries, "the layer should hold pydantic-core's and pyarrow's native code"
    wrong = [f"{p.relative_to(layer)}: e_machine {elf_machine(p)}" for p in libraries if elf_machine(p) != EM_X86_64]
    assert wrong == []
    other_python = [p.name for p in libraries if re.search(r"\.cpython-3\d+", p.name) and PYTHON_TAG[2:] not in p.name]
    assert other_python == []


def tag_fits_lambda(tag: str) -> bool:
    """A wheel tag (python-abi-platform) that CPython 3.13 on Lambda's x86_64 Linux can load."""
    python, abi, platform = tag.split("-")
    glibc = re.fullmatch(r"manylinux_2_(\d+)_x86_64", platform)
    platform_ok = platform in ("any", "manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64") or bool(
        glibc and int(glibc.group(1)) <= RUNTIME_GLIBC_MINOR
    )
    if abi == "abi3":
        python_ok = re.fullmatch(r"cp3(\d+)", python) is not None and int(python[3:]) <= int(PYTHON_TAG[3:])
    elif abi == "none":
        python_ok = python in ("py3", "py313", PYTHON_TAG)
    else:
        python_ok = python == PYTHON_TAG and abi == PYTHON_TAG
    return platform_ok and python_ok


def test_every_wheel_in_the_layer_was_built_for_lambdas_python_and_platform(layer):
    wheels = {p.parent.name: (p.read_text()) for p in layer.glob("*.dist-info/WHEEL")}
    assert len(wheels) > 5
    tags = {name: re.findall(r"^Tag: (\S+)$", text, re.MULTILINE) for name, text in wheels.items()}
    foreign = {name: found for name, found in tags.items() if not any(tag_fits_lambda(t) for t in found)}
    other_platform = {
        name: [t for t in found if t.split("-")[2] != "any" and not t.endswith("_x86_64")]
        for name, found in tags.items()
    }
    assert foreign == {} and {k: v for k, v in other_platform.items() if v} == {}


def requirement_lines() -> list[str]:
    text = (ROOT / "functions" / "requirements.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pinned(lines: str, name: str) -> str:
    found = [r.specifier for r in map(Requirement, lines) if r.name == name]
    assert len(found) == 1 and str(found[0]).startswith("=="), f"{name} must be pinned once with =="
    return str(found[0])[2:]


def test_the_layer_holds_one_boto3_and_one_botocore_pinned_together_at_pyprojects_versions(layer):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = requirement_lines()
    versions = {}
    for name in ("boto3", "botocore"):
        assert pinned(requirements, name) == pinned(project, name)
        installed = list(layer.glob(f"{name}-*.dist-info"))
        assert len(installed) == 1, f"the layer must hold exactly one {name}: {installed}"
        versions[name] = Parser().parsestr((installed[0] / "METADATA").read_text())
        assert versions[name]["Version"] == pinned(requirements, name)
    needs = [Requirement(r) for r in versions["boto3"].get_all("Requires-Dist") if r.startswith("botocore")]
    assert needs and all(versions["botocore"]["Version"] in r.specifier for r in needs if not r.marker)


# The markers of Lambda's python3.13 runtime: pip evaluated the packages' markers with the host's
# Python (it applies --python-version to wheel tags only), so a marker that differs on 3.13 could
# leave a dependency out; this reads them again as the runtime would.
LAMBDA_MARKERS = {"python_version": "3.13", "python_full_version": "3.13.0", "sys_platform": "linux",
                  "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip


def test_every_dependency_of_the_layer_is_in_it_for_lambdas_python(layer):
    metadata = {}
    for info in layer.glob("*.dist-info"):
        found = Parser().parsestr((info / "METADATA").read_text())
        metadata[canonicalize_name(found["Name"])] = found
    wanted = [Requirement(line) for line in requirement_lines()]
    extras = {canonicalize_name(r.name): set(r.extras) for r in wanted}
    unmet, queue = [], list(metadata)
    while queue:
        name = queue.pop()
        for line in metadata[name].get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            applies = not requirement.marker or any(
                requirement.marker.evaluate({**LAMBDA_MARKERS, "extra": extra}) for extra in {"", *extras.get(name, ())}
            )
            if not applies:
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in metadata or metadata[dependency]["Version"] not in requirement.specifier:
                unmet.append(f"{name}: {requirement}")
            elif not set(requirement.extras) <= extras.setdefault(dependency, set()):
                extras[dependency] |= set(requirement.extras)
                queue.append(dependency)
    assert unmet == [] and {canonicalize_name(r.name) for r in wanted} <= set(metadata)
