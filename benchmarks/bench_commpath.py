"""Cost of the plugin's G-code hooks on OctoPrint's comm thread, per line.

A real slicer file of about 2 million lines (PrusaSlicer slices an 80 mm cylinder, 60 mm
tall, 0.1 mm layers, gyroid infill, z-hop; made on the first run and kept in
benchmarks/.cache/) is fed line by line, the way OctoPrint calls the hooks during a print:
comments stripped, the G-code word parsed by OctoPrint, ``source:file`` tags. Measured in
the same run: the plugin's queuing and sending hooks (armed for every 3rd layer) and, as
the baseline, an empty function with the same signature.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Set, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from common import Row, record  # noqa: E402
from system_packages import find_program, missing_message  # noqa: E402

CACHE = HERE / ".cache"
BIG = CACHE / "big_cylinder.gcode"
BENCH = "comm path"
Line = Tuple[str, Optional[str], Set[str]]


def slice_big_file() -> Path:
    if BIG.is_file():
        return BIG
    from make_fixtures import NO_HEAT, cylinder, write_binary_stl

    CACHE.mkdir(exist_ok=True)
    model = CACHE / "big_cylinder.stl"
    write_binary_stl(model, cylinder(80.0, 60.0, sides=64))
    slicer = find_program("prusa-slicer")
    if slicer is None:
        raise SystemExit(missing_message("prusa-slicer"))
    command = [slicer, "--export-gcode", str(model), "--output", str(BIG)]
    command += ["--center", "100,100", *NO_HEAT, "--gcode-flavor", "marlin2"]
    command += ["--layer-height", "0.1", "--first-layer-height", "0.2"]
    command += ["--fill-density", "20%", "--fill-pattern", "gyroid", "--retract-lift", "0.2"]
    subprocess.run(command, check=True, capture_output=True)
    return BIG


def hook_inputs(path: Path) -> List[Line]:
    """What OctoPrint hands the queuing hook for each line of the file: the line without
    its comment, the G-code word, and the tags of a file line (``filepos`` is the byte
    offset after the line, ``fileline`` counts the lines with code, as OctoPrint's
    PrintingGcodeFileInformation does)."""
    from octoprint.util.comm import gcode_command_for_cmd, strip_comment

    lines: List[Line] = []
    pos = 0
    with open(path, "rb") as handle:
        for raw in handle:
            pos += len(raw)
            cmd = strip_comment(raw.decode("utf-8")).strip()
            if cmd:
                tags = {"source:file", f"filepos:{pos}", f"fileline:{len(lines) + 1}"}
                lines.append((cmd, gcode_command_for_cmd(cmd), tags))
    return lines


def armed_plugin() -> Any:
    """The real plugin object with a print armed as the beforePrintStarted hook arms it
    (every 3rd layer), but a worker that is always busy: a trigger finds nobody to run the
    capture, so the line goes on, which costs what the check costs."""
    from datetime import datetime

    from octoprint_layercapture import LayerCapturePlugin
    from octoprint_layercapture.capture.armed import ArmedPrint, PrintInfo
    from octoprint_layercapture.capture.layers import LayerTargets, LayerTracker
    from octoprint_layercapture.capture.printer_port import OctoPrintPrinterPort
    from octoprint_layercapture.session import CaptureSession
    from octoprint_layercapture.settings import validate

    plugin = LayerCapturePlugin()
    armed = ArmedPrint(
        settings=validate({"capture_every_n_layers": 3}, None),
        bounds=None,
        print_info=PrintInfo(BIG.name, datetime.now()),
        store_root=CACHE / "captures",
        firmware_family=None,
    )
    port = OctoPrintPrinterPort(None, "pause")
    tracker = LayerTracker(LayerTargets(every_n=3))
    quiet = logging.getLogger("bench.commpath")
    quiet.disabled = True  # "the previous capture is still running", once per trigger
    plugin._session = CaptureSession(armed, tracker, port, 1, quiet)
    plugin._worker = BusyWorker()
    return plugin


class BusyWorker:
    """A capture worker that is always busy (a trigger is skipped, the line goes on)."""

    busy = True

    def submit(self, request: Any) -> None:
        raise AssertionError("a busy worker is given no capture")


def empty_hook(
    comm_instance: Any,
    phase: str,
    cmd: str,
    cmd_type: Optional[str],
    gcode: Optional[str],
    subcode: Optional[str] = None,
    tags: Optional[Set[str]] = None,
    *args: Any,
    **kwargs: Any,
) -> Any:
    return None


def per_line(hook: Callable[..., Any], phase: str, lines: List[Line]) -> float:
    """Seconds per line (best of three passes over the whole file)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for cmd, gcode, tags in lines:
            hook(None, phase, cmd, None, gcode, None, tags)
        best = min(best, time.perf_counter() - started)
    return best / len(lines)


def main() -> None:
    path = slice_big_file()
    lines = hook_inputs(path)
    print(f"  {path.name}: {len(lines):,} lines with code")
    empty = per_line(empty_hook, "queuing", lines)
    queuing = min(per_line(armed_plugin().on_gcode_queuing, "queuing", lines) for _ in range(2))
    sending = per_line(armed_plugin().on_gcode_sending, "sending", lines)
    us = 1e6
    record(
        Row(
            BENCH,
            "queuing hook per line (layer tracking)",
            queuing * us,
            "us",
            "empty hook",
            empty * us,
            target="< 5 us",
            note=f"{len(lines):,} lines",
            ratio_of_baseline=True,
        )
    )
    record(
        Row(
            BENCH,
            "sending hook per line",
            sending * us,
            "us",
            "empty hook",
            empty * us,
            ratio_of_baseline=True,
        )
    )
    record(
        Row(
            BENCH,
            "both hooks per line, above the empty hook",
            (queuing + sending - 2 * empty) * us,
            "us",
            target="< 5 us",
        )
    )
    layers = armed_plugin()
    for cmd, gcode, tags in lines:
        layers.on_gcode_queuing(None, "queuing", cmd, None, gcode, None, tags)
    print(f"  layers found: {layers._session.tracker.layer}")


if __name__ == "__main__":
    main()
