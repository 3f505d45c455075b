"""The JVM jars a local Spark needs beside PySpark: Iceberg's Spark runtime and SQLite's JDBC driver.

EMR ships Iceberg itself (the cluster's `iceberg-defaults` classification), so these are for local
runs and tests only. Each is pinned by version and SHA-256, fetched from Maven Central by
`make install` (`python -m iotpipe.local.jars`) into `build/jars/`, and never committed. The
Iceberg version is the one EMR ships with the template's releases (emr-7.14.0 and
emr-spark-8.0.0: Iceberg 1.10.1), so a lake behaves the same here and there.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JAR_DIR = Path(os.environ.get("IOTPIPE_JARS", ROOT / "build" / "jars"))
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
ICEBERG_VERSION = "1.10.1"
# The EMR 7 release that ships that Iceberg (Spark 3.5): the template's default EmrReleaseLabel.
EMR_RELEASE = "emr-7.14.0"


@dataclass(frozen=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def url(self) -> str:
        return f"{MAVEN_CENTRAL}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.file_name}"

    @property
    def path(self) -> Path:
        return JAR_DIR / self.file_name


ICEBERG_RUNTIME = {
    "3": Jar("org.apache.iceberg", "iceberg-spark-runtime-3.5_2.12", ICEBERG_VERSION,
             "39ea09e6c03550a300b9d9ab498949836d2d434e441da4c12a943a086e396940"),
    "4": Jar("org.apache.iceberg", "iceberg-spark-runtime-4.0_2.13", ICEBERG_VERSION,
             "2192a0881ed0f5773b5a83a8820d2b0b2069beec203028643a1c338551007f09"),
}  # fmt: skip
SQLITE_JDBC = Jar(
    "org.xerial", "sqlite-jdbc", "3.51.1.0", "29eda0d1e5ab235b0f1baad05c531106c59c4a72c92a51a4b9c1a4e4c84abffe"
)


class JarsMissing(RuntimeError):
    """A jar the local Spark needs is not in build/jars: `make install` fetches it."""


def spark_major() -> str:
    import pyspark

    return pyspark.__version__.split(".")[0]


def jars_for(major: str | None = None) -> list[Jar]:
    return [ICEBERG_RUNTIME[major or spark_major()], SQLITE_JDBC]


def local_jars(major: str | None = None) -> list[str]:
    """The jar paths for this PySpark's `spark.jars`; raises JarsMissing naming what to run."""
    jars = jars_for(major)
    missing = [jar.file_name for jar in jars if not jar.path.exists()]
    if missing:
        raise JarsMissing(f"{', '.join(missing)} not in {JAR_DIR}: run `make install` (it fetches them)")
    return [str(jar.path) for jar in jars]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(jar: Jar) -> Path:
    """Download `jar` unless a copy with the pinned checksum is there; refuse any other bytes."""
    if jar.path.exists() and sha256_of(jar.path) == jar.sha256:
        return jar.path
    JAR_DIR.mkdir(parents=True, exist_ok=True)
    partial = jar.path.with_suffix(".part")
    with urllib.request.urlopen(jar.url, timeout=300) as response, open(partial, "wb") as out:
        while block := response.read(1 << 20):
            out.write(block)
    found = sha256_of(partial)
    if found != jar.sha256:
        partial.unlink()
        raise ValueError(f"{jar.url}: SHA-256 {found}, pinned {jar.sha256}: refused")
    partial.replace(jar.path)
    return jar.path


def main(argv: list[str]) -> int:
    """Fetch the jars of the given Spark majors (default: both)."""
    majors = argv or sorted(ICEBERG_RUNTIME)
    for jar in {jar for major in majors for jar in jars_for(major)}:
        fetch(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
