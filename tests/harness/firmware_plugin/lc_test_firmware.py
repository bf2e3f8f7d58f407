"""Test-only OctoPrint plugin: firmware behaviour the Virtual Printer has no setting for.

The integration harness copies this file into ``BASEDIR/plugins/`` when a server is made
with ``firmware_quirks=True``. Its settings (``plugins.lc_test_firmware``) are read on every
command, so a test can change them through the REST settings API and reconnect:

* ``without_m400``: the printer does not know M400. It answers like Marlin built without
  it (``echo:Unknown command: "M400"``, then ``ok`` at once) and does not wait for moves.
* ``g4_waits_for_moves``: G4 first waits until the move queue is empty, as Marlin's,
  RepRapFirmware's and Klipper's G4 do (the Virtual Printer's G4 only sleeps).
* ``busy_interval``: seconds; while M400 (or such a G4) waits for the moves, the printer
  sends ``echo:busy: processing`` this often, as Marlin's host keepalive does during long
  moves (the Virtual Printer's own ``sendBusy`` covers only heating and dwelling). 0 = off.

Everything else the tests vary (M114 format, ok order, busy lines) is a setting of the
Virtual Printer itself. This wraps two methods of the Virtual Printer class, which
OctoPrint 1.10, 1.11 and 2.0 all have; it refuses to start if they are missing.
"""

from __future__ import annotations

import time
from typing import Any, Dict

import octoprint.plugin

__plugin_name__ = "Layer Capture test firmware quirks"
__plugin_version__ = "1.0.0"
__plugin_description__ = "Test-only: makes the Virtual Printer behave like other firmware"
__plugin_pythoncompat__ = ">=3.9,<4"

UNKNOWN_M400 = 'echo:Unknown command: "M400"'
BUSY = "echo:busy: processing"


class FirmwareQuirks(octoprint.plugin.SettingsPlugin, octoprint.plugin.StartupPlugin):
    def get_settings_defaults(self) -> Dict[str, Any]:
        return {"without_m400": False, "g4_waits_for_moves": False, "busy_interval": 0.0}

    def on_startup(self, host: str, port: int) -> None:
        from octoprint.plugins.virtual_printer.virtual import VirtualPrinter

        original_g4 = VirtualPrinter._gcode_G4
        settings = self._settings

        def wait_for_moves(printer: Any) -> None:
            moves = printer.buffered
            interval = settings.get_float(["busy_interval"]) or 0.0
            last = time.monotonic()
            while interval > 0 and moves.unfinished_tasks:
                if time.monotonic() - last >= interval:
                    printer._send(BUSY)
                    last = time.monotonic()
                time.sleep(0.005)
            moves.join()

        def gcode_m400(printer: Any, data: str) -> Any:
            if settings.get_boolean(["without_m400"]):
                printer._send(UNKNOWN_M400)  # the ok follows as for any command
                return None
            wait_for_moves(printer)
            return None

        def gcode_g4(printer: Any, data: str) -> Any:
            if settings.get_boolean(["g4_waits_for_moves"]):
                wait_for_moves(printer)
            return original_g4(printer, data)

        VirtualPrinter._gcode_M400 = gcode_m400
        VirtualPrinter._gcode_G4 = gcode_g4
        self._logger.info("lc_test_firmware: Virtual Printer M400/G4 wrapped")


__plugin_implementation__ = FirmwareQuirks()
