"""Test-only OctoPrint plugin: a slow PrintStarted handler, as some plugins have.

OctoPrint delivers events to every plugin in turn on one thread; a handler that takes long
delays every later subscriber. Its identifier sorts before ``layercapture``, so the Layer
Capture plugin gets PrintStarted only after this handler returns. The delay (seconds) comes
from ``LC_TEST_SLOW_PRINT_STARTED``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import octoprint.plugin

__plugin_name__ = "Layer Capture test: slow PrintStarted"
__plugin_version__ = "1.0.0"
__plugin_description__ = "Test-only: sleeps in its PrintStarted handler"
__plugin_pythoncompat__ = ">=3.9,<4"

DELAY_ENV = "LC_TEST_SLOW_PRINT_STARTED"


class SlowPrintStarted(octoprint.plugin.EventHandlerPlugin):
    def on_event(self, event: str, payload: Optional[Dict[str, Any]]) -> None:
        if event == "PrintStarted":
            delay = float(os.environ.get(DELAY_ENV) or 0)
            self._logger.info(f"aaa_lc_slow_start: sleeping {delay:g} s in PrintStarted")
            time.sleep(delay)


__plugin_implementation__ = SlowPrintStarted()
