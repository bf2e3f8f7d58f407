"""Cost of the plugin's ``gcode.received`` hook per received line, on OctoPrint's comm thread.

OctoPrint calls it for every line the printer sends (every ``ok``, temperature report...).
Measured on the real plugin object with a printer port built on a stand-in printer:

* no print armed (no port), and a print armed with no confirmation pending: the hook must
  leave at once;
* a confirmation pending: the line is classified (an ``echo:busy`` line, the common case
  while M400 waits).

Baseline (same run): a hook that only returns its line, the least any hook can cost.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, machine_summary, measure, record

from octoprint_layercapture import __plugin_implementation__ as plugin
from octoprint_layercapture.capture.printer_port import OctoPrintPrinterPort
from octoprint_layercapture.capture.replies import ReplyWatch

LINES_PER_CALL = 10_000
BENCH = "received_hook"


class StandInPrinter:
    def commands(self, commands: List[str], tags: Any = None) -> None:
        pass


def plain_hook(comm_instance: Any, line: str, *args: Any, **kwargs: Any) -> str:
    return line


def per_line(hook: Any, line: str) -> float:
    def calls() -> None:
        for _ in range(LINES_PER_CALL):
            hook(None, line)

    return measure(calls, runs=15).median / LINES_PER_CALL * 1e9


def main() -> None:
    print(f"machine: {machine_summary()}")
    line = "ok T:210.0 /210.0 B:60.0 /60.0 @:64\n"
    baseline = per_line(plain_hook, line)

    plugin._port = None
    idle = per_line(plugin.on_gcode_received, line)

    port = OctoPrintPrinterPort(StandInPrinter(), "hold")
    plugin._port = port
    armed = per_line(plugin.on_gcode_received, line)

    # a confirmation out: the watch is what confirm() installs once M400 went out
    watch = ReplyWatch()
    watch.sent("M400")
    port._watch = watch
    reading = per_line(plugin.on_gcode_received, "echo:busy: processing\n")
    plugin._port = None

    for metric, value in (
        ("per line, no print armed", idle),
        ("per line, armed, no confirmation pending", armed),
        ("per line while a confirmation waits", reading),
    ):
        record(
            Row(
                BENCH,
                metric,
                value,
                "ns",
                baseline="hook returning its line",
                baseline_value=baseline,
                target="< 1000 ns idle" if "pending" in metric or "no print" in metric else "",
                ratio_of_baseline=True,
            )
        )


if __name__ == "__main__":
    main()
