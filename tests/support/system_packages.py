"""The programs from Debian packages that tests, fixtures and benchmarks call.

Reads the one list, ``debian-packages.txt`` (scripts/system-packages.sh reads the same).
:func:`require_program` is how a test gets such a program: its path, or, when it is
missing, a skip naming the ``apt-get install`` line, and a failure with that line in CI
(``LAYERCAPTURE_REQUIRE_PROGRAMS=1``, set by .ci/run). Asking for a program the list does
not name is an error, so the list cannot fall behind the tests. Standard library only
(pytest is imported when a test needs it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

PACKAGE_LIST = Path(__file__).resolve().parents[2] / "debian-packages.txt"
REQUIRE_ENV = "LAYERCAPTURE_REQUIRE_PROGRAMS"


@dataclass(frozen=True)
class DebianPackage:
    name: str
    programs: Tuple[str, ...]  # on PATH, absolute paths, or python:<module>
    groups: Tuple[str, ...]
    called_by: str


def read_packages(path: Path = PACKAGE_LIST) -> List[DebianPackage]:
    packages = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 4:
            raise ValueError(f"{path}:{number}: expected package, program, groups, caller")
        name, program, groups, called_by = fields
        packages.append(
            DebianPackage(name, tuple(program.split(",")), tuple(groups.split(",")), called_by)
        )
    return packages


def package_for(program: str, path: Path = PACKAGE_LIST) -> DebianPackage:
    for package in read_packages(path):
        if program in package.programs:
            return package
    raise LookupError(f"{program!r} is not in {path.name}: add the Debian package that has it")


def find_program(program: str) -> Optional[str]:
    """The program's path, or None (an absolute path must be executable)."""
    if os.path.isabs(program):
        return program if os.access(program, os.X_OK) else None
    return shutil.which(program)


def missing_message(program: str, path: Path = PACKAGE_LIST) -> str:
    package = package_for(program, path)
    return (
        f"{program} is missing: apt-get install -y {package.name} "
        f"(make test installs it when run as root)"
    )


def required_in_ci() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def require_program(program: str, path: Path = PACKAGE_LIST) -> str:
    """The program's path for a test; skips, or fails in CI, when it is missing."""
    import pytest

    found = find_program(program)
    if found is not None:
        package_for(program, path)  # found or not, it must be on the list
        return found
    why = missing_message(program, path)
    if required_in_ci():
        pytest.fail(f"{why}; {REQUIRE_ENV}=1 makes this an error", pytrace=False)
    pytest.skip(why)
