"""The README names every parameter of the stack: a user deploying it must be able to find each
setting without reading template.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.unit.test_quality import _CloudFormationLoader

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_parameter_is_named_in_the_readme():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CloudFormationLoader)
    readme = (ROOT / "README.md").read_text()
    assert [name for name in template["Parameters"] if f"`{name}`" not in readme] == []
