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
* ``limits``: the firmware's soft limits as JSON text, ``{"x": [min, max], "y": [...], "z":
  [...]}`` and optionally ``"radius": r`` around ``"center": [x, y]`` (a round bed), or ""
  (text, since OctoPrint's settings can't replace a nested value with null and back). A G0/G1
  whose target lies beyond them is answered as ``out_of_range`` says: ``"error"`` like
  Klipper (``!! Move out of range: X Y Z [E]``, the move is dropped; OctoPrint treats ``!!``
  as a fatal error) or ``"clamp"`` like Marlin (moved to the limit in silence).
* ``report_m211``: M211 answers with the limits, as Marlin 2.0 does
  (``echo:Soft endstops: On  Min:  X0.00 Y0.00 Z0.00  Max:  X200.00 Y200.00 Z200.00``).
* ``misreport_x_above_z``: a Z; while the head is above it, M114 reports X 3 mm off (a
  broken report): moves up there can't be confirmed.
* ``lose_x_above_z``: a Z; once the head has been above it, M114 reports X 3 mm off at
  every height from then on (a printer that lost steps up there), until the setting is
  cleared or G28 homes: nothing after that, the way back included, can be confirmed.

Everything else the tests vary (M114 format, ok order, busy lines) is a setting of the
Virtual Printer itself. This wraps two methods of the Virtual Printer class, which
OctoPrint 1.10, 1.11 and 2.0 all have; it refuses to start if they are missing.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Dict, Optional

import octoprint.plugin

__plugin_name__ = "Layer Capture test firmware quirks"
__plugin_version__ = "1.0.0"
__plugin_description__ = "Test-only: makes the Virtual Printer behave like other firmware"
__plugin_pythoncompat__ = ">=3.9,<4"

UNKNOWN_M400 = 'echo:Unknown command: "M400"'
BUSY = "echo:busy: processing"
OUT_OF_RANGE = "!! Move out of range"
_AXIS_WORD = {axis: re.compile(axis + r"\s*(-?[0-9]*\.?[0-9]+)") for axis in "XYZE"}


class FirmwareQuirks(octoprint.plugin.SettingsPlugin, octoprint.plugin.StartupPlugin):
    def get_settings_defaults(self) -> Dict[str, Any]:
        return {
            "without_m400": False,
            "g4_waits_for_moves": False,
            "busy_interval": 0.0,
            "limits": "",
            "out_of_range": "error",
            "report_m211": False,
            "misreport_x_above_z": None,
            "lose_x_above_z": None,
        }

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

        original_move = VirtualPrinter._gcode_G0
        original_g28 = VirtualPrinter._gcode_G28
        original_g92 = VirtualPrinter._gcode_G92

        def limits() -> Optional[Dict[str, Any]]:
            value = json.loads(settings.get(["limits"]) or "null")
            return value if isinstance(value, dict) else None

        def target(printer: Any, data: str) -> Dict[str, float]:
            # where the move goes, tracked when it is received (the Virtual Printer updates
            # its own position only once a queued move has run)
            known = printer.__dict__.setdefault("_lc_target", {"X": 0.0, "Y": 0.0, "Z": 0.0})
            wanted = dict(known)
            for axis in "XYZ":
                match = _AXIS_WORD[axis].search(data)
                if match is not None:
                    value = float(match.group(1))
                    wanted[axis] = known[axis] + value if printer._relative else value
            return wanted

        def beyond(box: Dict[str, Any], wanted: Dict[str, float]) -> bool:
            for axis in "XYZ":
                low, high = box.get(axis.lower(), [-math.inf, math.inf])
                if not low - 1e-6 <= wanted[axis] <= high + 1e-6:
                    return True
            radius = box.get("radius")
            if radius is not None:
                cx, cy = box.get("center", [0.0, 0.0])
                return math.hypot(wanted["X"] - cx, wanted["Y"] - cy) > radius + 1e-6
            return False

        def gcode_move(printer: Any, data: str) -> Any:
            box = limits()
            wanted = target(printer, data)
            if box is not None and beyond(box, wanted):
                if settings.get(["out_of_range"]) == "clamp" and not printer._relative:
                    for axis in "XYZ":
                        low, high = box.get(axis.lower(), [-math.inf, math.inf])
                        wanted[axis] = min(max(wanted[axis], low), high)
                        data = _AXIS_WORD[axis].sub(f"{axis}{wanted[axis]:.3f}", data)
                else:
                    words = " ".join(f"{wanted[a]:.3f}" for a in "XYZ")
                    printer._send(f"{OUT_OF_RANGE}: {words} [0.000]")
                    return None
            printer._lc_target = wanted
            return original_move(printer, data)

        def gcode_g28(printer: Any, data: str) -> Any:
            named = [axis for axis in "XYZ" if axis in data.upper()[3:]] or list("XYZ")
            known = printer.__dict__.setdefault("_lc_target", {"X": 0.0, "Y": 0.0, "Z": 0.0})
            for axis in named:
                known[axis] = 0.0
            printer._lc_lost_steps = False  # homing finds the lost steps again
            return original_g28(printer, data)

        def gcode_g92(printer: Any, data: str) -> Any:
            known = printer.__dict__.setdefault("_lc_target", {"X": 0.0, "Y": 0.0, "Z": 0.0})
            for axis in "XYZ":
                match = _AXIS_WORD[axis].search(data[3:])
                if match is not None:
                    known[axis] = float(match.group(1))
            return original_g92(printer, data)

        def gcode_m211(printer: Any, data: str) -> Any:
            box = limits()
            if settings.get_boolean(["report_m211"]) and box is not None:
                low = " ".join(f"{a.upper()}{box[a][0]:.2f}" for a in "xyz")
                high = " ".join(f"{a.upper()}{box[a][1]:.2f}" for a in "xyz")
                printer._send(f"echo:Soft endstops: On  Min:  {low}  Max:  {high}")
            return None

        original_m114 = VirtualPrinter._gcode_M114

        def gcode_m114(printer: Any, data: str) -> Any:
            above = settings.get(["misreport_x_above_z"])
            lost_above = settings.get(["lose_x_above_z"])
            z, x = printer._lastZ, printer._lastX
            if lost_above is None:
                printer._lc_lost_steps = False
            elif z is not None and z > float(lost_above):
                printer._lc_lost_steps = True
            lost = getattr(printer, "_lc_lost_steps", False)
            misreport = above is not None and z is not None and z > float(above)
            if x is None or not (lost or misreport):
                return original_m114(printer, data)
            printer._lastX = x + 3.0
            try:
                return original_m114(printer, data)
            finally:
                printer._lastX = x

        VirtualPrinter._gcode_M114 = gcode_m114
        VirtualPrinter._gcode_M400 = gcode_m400
        VirtualPrinter._gcode_G4 = gcode_g4
        VirtualPrinter._gcode_G0 = gcode_move
        VirtualPrinter._gcode_G1 = gcode_move
        VirtualPrinter._gcode_G28 = gcode_g28
        VirtualPrinter._gcode_G92 = gcode_g92
        VirtualPrinter._gcode_M211 = gcode_m211
        self._logger.info("lc_test_firmware: Virtual Printer M400/G4/G0/G1/G28/G92/M211 wrapped")


__plugin_implementation__ = FirmwareQuirks()
