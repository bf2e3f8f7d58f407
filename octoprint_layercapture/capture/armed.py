"""What a print is captured with: fixed when it starts, shared by everything that runs for
it (the session, the worker, the metadata). Pure module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from ..settings import Bounds, CaptureSettings
from .estimate import STOCK, MotionLimits


@dataclass(frozen=True)
class PrintInfo:
    gcode_file: str
    started_at: datetime


@dataclass(frozen=True)
class ArmedPrint:
    settings: CaptureSettings
    bounds: Optional[Bounds]  # the profile's, the settings' and the firmware's, combined
    print_info: PrintInfo
    store_root: Path  # the capture folder
    firmware_family: Optional[str]  # see capture.firmware; None: unknown
    # Every line reaches the printer numbered and checksummed, and a firmware error stops
    # OctoPrint sending (see SettingsReader.lines_checked): moves may then go out in one
    # batch, confirmed once at the end (capture.sequence).
    lines_checked: bool = False
    motion_limits: MotionLimits = STOCK  # what the time estimates assume of the printer
