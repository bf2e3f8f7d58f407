"""The harness's own helpers that decide what a test sees."""

from __future__ import annotations

from pathlib import Path

from harness import names_the_plugin

CLONE = Path("/src/OctoPrint-LayerCapture")  # what `git clone` of the project makes


def test_a_checkout_named_like_the_plugin_does_not_make_every_log_line_about_it() -> None:
    venv_file = f"{CLONE}/.venv/lib/python3.11/site-packages/octoprint/util/__init__.py"
    assert not names_the_plugin(f"WARNING - {venv_file}:1394: DeprecationWarning: isSet()", CLONE)
    plugin_file = f"{CLONE}/octoprint_layercapture/worker.py"
    assert names_the_plugin(f"WARNING - {plugin_file}:9: DeprecationWarning", CLONE)
    assert names_the_plugin("site-packages/octoprint_layercapture/worker.py:9: Deprecation", CLONE)
    assert names_the_plugin("Error while processing hook layercapture for phase queuing", CLONE)
    assert names_the_plugin("octoprint.plugins.layercapture - ERROR - the camera", CLONE)
