"""`make test-compat`: the tests on other OctoPrint and Python versions than `make test`'s.

One virtualenv per leg under .venv-compat/<leg>, made with that leg's Python: OctoPrint from
PyPI at the leg's version and the test extras (installed once, again when the leg or
pyproject.toml changes), then on every run the plugin as users get it (a wheel of this
checkout, not an editable install: OctoPrint 1.10's plugin loader can't see those). Each leg
runs the unit tests and its integration tests; the source is also compiled by every Python
from 3.9 to 3.13 that can be found. Ends with a table of what ran, and fails if anything did.

    .venv/bin/python scripts/compat.py                   # every leg
    .venv/bin/python scripts/compat.py --leg 2.0 -- -x   # one leg, extra pytest arguments
    .venv/bin/python scripts/compat.py --leg 2.0 --smoke # what .ci/run adds to make test
    .venv/bin/python scripts/compat.py --full            # every leg runs every test
    .venv/bin/python scripts/compat.py --python 3.9=/opt/py39/bin/python3.9

`make test` covers OctoPrint 1.11 on the default Python; the legs here add the others.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venv-compat"
REPORTS = ROOT / "test-artifacts" / "compat"
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
UNIT = "tests/unit"
INTEGRATION = "tests/integration"
# --smoke, and the 1.10 leg: loads, settings, API, every firmware flavour's capture
SMOKE = (UNIT, f"{INTEGRATION}/test_foundation.py", f"{INTEGRATION}/test_firmware.py")
FULL = (UNIT, INTEGRATION)  # the browser tests run in `make test` only


@dataclass(frozen=True)
class Leg:
    name: str
    octoprint: str  # pip requirement
    python: str
    tests: Tuple[str, ...]
    why: str


LEGS = (
    Leg(
        "2.0",
        "OctoPrint==2.0.0rc7",
        "3.13",
        FULL,
        "newest OctoPrint release candidate on the newest Python: every test",
    ),
    Leg(
        "1.10",
        "OctoPrint==1.10.3",
        "3.9",
        SMOKE,
        "oldest supported OctoPrint on the oldest Python: loads, captures, every firmware",
    ),
)


@dataclass
class Outcome:
    leg: str
    octoprint: str = "?"
    python: str = "?"
    tests: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.note and self.failed == 0 and self.tests > 0


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def run(cmd: Sequence[str], **kwargs: object) -> None:
    say("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)  # type: ignore[call-overload]


def python_version_of(executable: str) -> Optional[str]:
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def find_python(version: str, given: Dict[str, str]) -> Optional[str]:
    """``--python`` first, then pythonX.Y on PATH, then pyenv's versions (whose shims fail
    for versions that aren't selected)."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [given.get(version), shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))[::-1]
    for candidate in candidates:
        if candidate and python_version_of(candidate) == version:
            return candidate
    return None


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def prepare(leg: Leg, python: str, wheel: Path) -> Path:
    """The leg's venv with OctoPrint and the test extras; rebuilt when its recipe changes."""
    venv = VENVS / leg.name
    recipe = json.dumps([leg.octoprint, python, (ROOT / "pyproject.toml").read_text()])
    stamp = venv / ".installed"
    digest = hashlib.sha256(recipe.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest and venv_python(venv).exists():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    run([python, "-m", "venv", venv])
    pip = [venv_python(venv), "-m", "pip", "install", "-q"]
    run([*pip, "--upgrade", "pip"])
    run([*pip, leg.octoprint])
    # the plugin's test extras (and the plugin, replaced later), resolved with the leg's
    # OctoPrint: left free, pip may swap it for another release that suits a test extra
    # (datasets' huggingface_hub wants a newer click than some OctoPrints allow)
    run([*pip, f"{wheel}[test]", leg.octoprint])
    stamp.write_text(digest)
    return venv


def build_wheel(target: Path) -> Path:
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools reuses build/lib
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", target, ROOT])
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    [wheel] = target.glob("octoprint_layercapture-*.whl")
    return wheel


def versions_in(venv: Path) -> Tuple[str, str]:
    code = "import octoprint, platform; print(octoprint.__version__, platform.python_version())"
    out = subprocess.run(
        [venv_python(venv), "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], out[1]


def read_junit(path: Path, outcome: Outcome) -> None:
    suite = ET.parse(path).getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    outcome.tests = int(suite.get("tests", 0))
    outcome.failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    outcome.skipped = int(suite.get("skipped", 0))


def run_leg(
    leg: Leg, python: str, wheel: Path, tests: Sequence[str], pytest_args: Sequence[str]
) -> Outcome:
    outcome = Outcome(leg.name)
    started = time.monotonic()
    venv = prepare(leg, python, wheel)
    run([venv_python(venv), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel])
    outcome.octoprint, outcome.python = versions_in(venv)
    outcome.setup_seconds = time.monotonic() - started
    REPORTS.mkdir(parents=True, exist_ok=True)
    junit = REPORTS / f"{leg.name}.xml"
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    # cwd is the checkout: the tests import harness from tests/, the plugin from the venv's
    # site-packages for the servers (python -m pytest also puts the checkout on sys.path
    # for the unit tests; same source, same wheel)
    result = subprocess.run(
        [
            venv_python(venv),
            "-m",
            "pytest",
            "-q",
            "-ra",
            "-p",
            "no:cacheprovider",
            # the responsiveness measurements (`alone`) need the machine to themselves:
            # `make test` runs them; they say nothing about a version
            "-m",
            "not browser and not alone",
            # two workers, each test file on one of them, as `make test`
            "-n",
            "2",
            "--dist",
            "loadfile",
            # a basetemp of our own, as `make test`: pytest rotates the shared ones
            f"--basetemp={ROOT / '.pytest-tmp' / f'compat-{leg.name}'}",
            f"--junitxml={junit}",
            "-o",
            "junit_family=legacy",  # keeps record_property's figures without a warning
            *tests,
            *pytest_args,
        ],
        cwd=ROOT,
    )
    outcome.seconds = time.monotonic() - started
    if junit.is_file():
        read_junit(junit, outcome)
    if result.returncode not in (0, 1):
        outcome.note = f"pytest exit code {result.returncode}"
    return outcome


def compile_everywhere(pythons: Dict[str, Optional[str]]) -> List[str]:
    """Every Python found compiles every module (syntax only; the legs import and run)."""
    sources = sorted(str(p) for p in (ROOT / "octoprint_layercapture").rglob("*.py"))
    code = (
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    compile(open(path, encoding='utf-8').read(), path, 'exec')\n"
    )
    lines = []
    for version, executable in pythons.items():
        if executable is None:
            lines.append(f"Python {version}: not found, not compiled")
            continue
        result = subprocess.run([executable, "-c", code, *sources], capture_output=True, text=True)
        status = "compiles" if result.returncode == 0 else "FAILS\n" + result.stderr
        lines.append(f"Python {version}: {len(sources)} modules {status}")
    return lines


def table(outcomes: Sequence[Outcome]) -> str:
    rows = ["leg  | OctoPrint | Python | tests | failed | skipped | set-up s | tests s | result"]
    for o in outcomes:
        result = "passed" if o.ok else (o.note or "FAILED")
        rows.append(
            f"{o.leg:<4} | {o.octoprint:<9} | {o.python:<6} | {o.tests:>5} | {o.failed:>6} | "
            f"{o.skipped:>7} | {o.setup_seconds:>8.0f} | {o.seconds:>7.0f} | {result}"
        )
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leg", action="append", choices=[leg.name for leg in LEGS])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--smoke", action="store_true", help="every leg runs " + " ".join(SMOKE))
    scope.add_argument("--full", action="store_true", help="every leg runs " + " ".join(FULL))
    parser.add_argument(
        "--python", action="append", default=[], metavar="X.Y=PATH", help="interpreter to use"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.python)
    legs = [leg for leg in LEGS if not args.leg or leg.name in args.leg]
    pythons = {version: find_python(version, given) for version in PYTHONS}
    started = time.monotonic()
    outcomes: List[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="lc-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        for leg in legs:
            python = pythons.get(leg.python) or given.get(leg.python)
            say(f"\n=== OctoPrint {leg.octoprint} on Python {leg.python}: {leg.why}")
            if python is None:
                outcomes.append(Outcome(leg.name, note=f"no Python {leg.python} found"))
                continue
            tests = SMOKE if args.smoke else FULL if args.full else leg.tests
            outcomes.append(run_leg(leg, python, wheel, tests, args.pytest_args))
    compiled = compile_everywhere(pythons)
    say("\n" + "\n".join(compiled))
    say("\n" + table(outcomes))
    say(f"test-compat took {time.monotonic() - started:.0f} s")
    ok = outcomes and all(o.ok for o in outcomes) and all("FAILS" not in c for c in compiled)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
