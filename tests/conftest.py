"""Shared pytest set-up for unit, integration and browser tests.

Imports nothing from OctoPrint: unit tests run without it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Generator

import pytest
from hypothesis import settings as hypothesis_settings

TESTS_DIR = Path(__file__).resolve().parent
SUPPORT_DIR = TESTS_DIR / "support"
# the helpers in tests/support (`import harness`, `import fakes`, ...) work from every test
# directory (and under --import-mode=importlib)
if str(SUPPORT_DIR) not in sys.path:
    sys.path.insert(0, str(SUPPORT_DIR))

# CI runs the same examples every time (a red run is reproducible from its log alone);
# elsewhere each run explores new ones
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator:
    """Keeps each phase's report on the item (``item.rep_setup``, ``item.rep_call``,
    ``item.rep_teardown``) so fixtures can tell in their teardown whether the test failed
    (see ``harness.item_failed``)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
