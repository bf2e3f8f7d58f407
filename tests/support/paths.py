"""Where the tests' files are, for every test folder alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

SUPPORT = Path(__file__).resolve().parent
TESTS = SUPPORT.parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
METADATA_SCHEMA_PATH = SUPPORT / "metadata_schema.json"


def metadata_schema() -> Dict[str, Any]:
    return dict(json.loads(METADATA_SCHEMA_PATH.read_text(encoding="utf-8")))
