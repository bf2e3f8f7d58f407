"""Every user-visible string goes through gettext, and the template catalogue is current."""

from __future__ import annotations

from pathlib import Path
from typing import Set

import pytest

babel_extract = pytest.importorskip("babel.messages.extract")
pytest.importorskip("octoprint.util.jinja")  # the Jinja extension babel.cfg names
from babel.messages.pofile import read_po  # noqa: E402

try:
    from babel.messages.frontend import parse_mapping_cfg
except ImportError:  # Babel < 2.14, which OctoPrint 1.10 pins, has the older name
    from babel.messages.frontend import parse_mapping as parse_mapping_cfg

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "octoprint_layercapture" / "translations" / "messages.pot"


def extracted() -> Set[str]:
    with open(ROOT / "babel.cfg", encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = set()
    for filename, _line, message, _comments, _context in babel_extract.extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        if "octoprint_layercapture" in filename:
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_strings_of_templates_scripts_and_python_are_extracted():
    messages = extracted()
    for expected in (
        "Centre on bed",  # settings template
        "Captured layer %(layer)s: %(images)s images in %(seconds)s s",  # tab script
        "Position %(number)d is not visited: %(reason)s",  # settings script
        "Allows to see the capture status and the gallery",  # permission (Python)
    ):
        assert expected in messages


def test_the_committed_template_is_current():
    with open(TEMPLATE, "rb") as handle:
        committed = {m.id for m in read_po(handle) if m.id}
    committed = {m if isinstance(m, str) else m[0] for m in committed}
    fresh = extracted()
    assert committed == fresh, (
        "translations/messages.pot is out of date: run `make babel-extract` "
        f"(new: {sorted(fresh - committed)[:5]}, gone: {sorted(committed - fresh)[:5]})"
    )
