"""The one list of Debian packages: what make and .ci/run do with it, and what a test does
when a program on it is missing (a skip naming the apt-get line, a failure in CI; never a
FileNotFoundError)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from system_packages import (
    PACKAGE_LIST,
    REQUIRE_ENV,
    missing_message,
    package_for,
    read_packages,
    require_program,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-packages.sh"
GROUPS = {"venv", "test", "bench", "fixtures", "ci"}

FAKE_LIST = """\
# package  present when  groups  called by
lc-fake-tool      lc-fake-tool      test        a test
lc-fake-slicer    lc-fake-slicer    bench       a benchmark
lc-present        lc-present,sh     test,bench  found on PATH
lc-fake-module    python:lc_no_such_module  test  a Python check
lc-fake-headers   python-h:lc_no_such_header.h  test  a C header of $PYTHON
lc-headers        python-h:Python.h  test  the venv's Python has its headers
"""


@pytest.fixture
def fake_list(tmp_path: Path) -> Path:
    path = tmp_path / "debian-packages.txt"
    path.write_text(FAKE_LIST)
    return path


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH folder holding lc-present (and nothing else on the fake list)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "lc-present"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return folder


def check(fake_list: Path, fake_bin: Path, *groups: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DEBIAN_PACKAGES": str(fake_list),
        "PYTHON": sys.executable,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "--check", "--for", "make test", *groups],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_the_list_names_a_package_for_every_program_the_suite_calls() -> None:
    packages = read_packages()
    names = [p.name for p in packages]
    assert len(names) == len(set(names))
    for package in packages:
        assert set(package.groups) <= GROUPS, package
    # the programs tests, fixtures and benchmarks ask require_program/find_program for
    for program in ("ffmpeg", "/usr/bin/chromium", "mount", "umount", "prusa-slicer", "slic3r"):
        assert package_for(program).name
    assert package_for("ffmpeg").name == "ffmpeg" and "test" in package_for("ffmpeg").groups
    assert "ci" in package_for("make").groups
    assert package_for("python:ensurepip").name == "python3-venv"
    # OctoPrint's netifaces has no wheel for Python 3.11: pip compiles it
    assert package_for("gcc").name == "gcc"
    assert package_for("python-h:Python.h").name == "python3-dev"


def test_the_script_names_the_exact_apt_get_line_for_the_missing_packages(
    fake_list: Path, fake_bin: Path
) -> None:
    result = check(fake_list, fake_bin, "test")
    assert result.returncode == 1
    assert "sudo apt-get install -y lc-fake-tool lc-fake-module lc-fake-headers\n" in result.stderr
    assert result.stderr.startswith("make test needs Debian packages that are not installed")
    assert "lc-fake-slicer" not in result.stderr, "only the groups asked for"
    assert "lc-present" not in result.stderr, "found on PATH"
    assert "lc-headers" not in result.stderr, "found in the include folder"

    both = check(fake_list, fake_bin, "test", "bench")
    assert "install -y lc-fake-tool lc-fake-slicer lc-fake-module lc-fake-headers\n" in both.stderr

    # nothing missing: silent success
    quiet = check(fake_list, fake_bin, "nothing-listed")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_a_program_is_missing_when_one_of_its_names_is(
    fake_list: Path, fake_bin: Path, tmp_path: Path
) -> None:
    (fake_bin / "lc-present").unlink()
    result = check(fake_list, fake_bin, "bench")
    assert "apt-get install -y lc-fake-slicer lc-present\n" in result.stderr


def test_a_missing_program_skips_with_the_apt_get_line(
    fake_list: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_program("lc-fake-tool", fake_list)
    assert str(skipped.value) == missing_message("lc-fake-tool", fake_list)
    assert "apt-get install -y lc-fake-tool" in str(skipped.value)


def test_a_missing_program_fails_in_ci(fake_list: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_program("lc-fake-tool", fake_list)
    assert "apt-get install -y lc-fake-tool" in str(failed.value)
    assert REQUIRE_ENV in str(failed.value)


def test_a_found_program_gives_its_path_and_must_be_on_the_list(
    fake_list: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    assert require_program("lc-present", fake_list) == str(fake_bin / "lc-present")
    with pytest.raises(LookupError, match=r"not in debian-packages\.txt"):
        require_program("sh", PACKAGE_LIST)


def test_the_mjpeg_servers_skip_without_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.mjpeg_servers import MjpegRelay, ffmpeg_listen

    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg anywhere on it
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y ffmpeg"):
        MjpegRelay()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y ffmpeg"):
        ffmpeg_listen(9)
