"""What the Spark job ships to a cluster: `spark/` and every `iotpipe` module it imports, found by
following its imports (so a new helper module can never be left out of the zip).

    python -m iotpipe.spark_package build/iotpipe_spark.zip

The zip goes to `--py-files`; `scripts/deploy.sh` uploads it beside `spark/job.py`.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = ("faults",)  # test-only fault injection (its jar is never deployed)


def _imported_iotpipe_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found |= {name for name in names if name == "iotpipe" or name.startswith("iotpipe.")}
    return found


def shipped_files(root: Path = ROOT) -> list[Path]:
    """`spark/**/*.py` and the transitive closure of the `iotpipe` modules they import."""
    spark_files = [p for p in (root / "spark").rglob("*.py") if not set(p.relative_to(root).parts) & set(LEFT_OUT)]
    files, queue = set(spark_files), list(spark_files)
    while queue:
        for module in _imported_iotpipe_modules(queue.pop()):
            parts = module.split(".")
            candidates = [root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")]
            for candidate in candidates:
                if candidate.exists() and candidate not in files:
                    files.add(candidate)
                    queue.append(candidate)
    # Every package of a shipped module, with its __init__ (zipimport finds no namespace packages).
    for path in list(files):
        parent = path.parent
        while parent != root:
            files.add(parent / "__init__.py")
            parent = parent.parent
    return sorted(files)


def build_zip(target: Path, root: Path = ROOT) -> list[str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    names = [str(p.relative_to(root)) for p in shipped_files(root)]
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(root / name, name)
    return names


if __name__ == "__main__":
    for shipped in build_zip(Path(sys.argv[1])):
        print(shipped)
