"""Tiny G-code prints for tests that need a captured print but not a real part.

A square outline per layer, absolute E, no heating: the virtual printer runs a 6-layer file
in a second or two, and the plugin captures it like any slicer's file (layers come from the
extruding moves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from octoprint_layercapture.camera_settings import camera_entry


def square_layers(layers: int, layer_height: float = 0.2, x: float = 90.0, y: float = 90.0) -> str:
    lines: List[str] = ["; tiny test print", "G90", "M82", "G28", "G92 E0", "G1 Z5 F3000"]
    e = 0.0
    side = 20.0
    for k in range(1, layers + 1):
        z = round(k * layer_height, 3)
        lines.append(f"G1 Z{z:.3f} F1200")
        lines.append(f"G1 X{x:.1f} Y{y:.1f} F6000")
        for px, py in ((x + side, y), (x + side, y + side), (x, y + side), (x, y)):
            e += 0.8
            lines.append(f"G1 X{px:.1f} Y{py:.1f} E{e:.4f} F1800")
    lines += ["G1 Z20 F1200", "M400", ""]
    return "\n".join(lines)


def write_square_print(folder: Path, name: str, layers: int) -> Path:
    path = Path(folder) / name
    path.write_text(square_layers(layers), encoding="utf-8")
    return path


# A 3x3 grid of the drawn test camera, every second layer, the job held (no scripts, no
# retract): what tests that need a captured print but not a particular capture use.
QUICK_CAPTURE: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_size": 3,
    "capture_every_n_layers": 2,
    "capture_delay": 0.0,
    "retract_length": 0.0,
    "stop_mode": "hold",
}
