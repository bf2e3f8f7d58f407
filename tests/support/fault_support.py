"""Fault injection on a real OctoPrint: run a short print, inject a fault at a chosen moment
of a capture sequence, and check what every fault must leave behind.

What every fault test asserts (issue "reliability"):

* the job ends in the expected state (``PrintDone``, or ``PrintCancelled`` / ``PrintFailed``
  when the user cancelled or the printer went away);
* the head never travelled below the printed top plus clearance, and was returned to where
  the job stopped, or (when the job was interrupted) left lifted;
* no half-written file (``.*.tmp``) remains, and every image a metadata file lists exists and
  is a complete JPEG;
* the failure is in octoprint.log, in the layer's metadata (when it could be written) and in
  the status the plugin pushed to the UI.

Nothing here sleeps for a state: faults are triggered by the plugin's own status messages
and the checks wait for OctoPrint's events.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import paths
import pytest
from capture_checks import (
    SENT_TOLERANCE,
    Block,
    Step,
    apply_settings,
    code_of,
    near,
    replay,
    same_line,
    split_blocks,
    wait_for_captured_layers,
)
from expected_layers import Analysis, analyse
from harness import Message, OctoPrintServer
from system_packages import require_program

from octoprint_layercapture.camera_settings import camera_entry

FIXTURES = paths.FIXTURES
TINY = FIXTURES / "prusa_tiny.gcode"  # 7 layers of 0.2 mm: every 3rd captures 3 and 6
END_EVENTS = ("PrintDone", "PrintFailed", "PrintCancelled")
CLEARANCE = 1.0  # the plugin's travel clearance above the printed top (gcode.py)

# A 3x3 grid with a short settle delay: long enough (~2 s) to inject a fault mid-sequence.
FAULT_SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "snapshot_timeout": 5.0,
    "snapshot_retries": 1,
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "z_offset": 5.0,
    "capture_every_n_layers": 3,
    "capture_z_heights": [],
    "capture_delay": 0.2,
    "pre_capture_delay": 0.0,
    "create_thumbnails": True,
    "retract_length": 1.0,
    "stop_mode": "pause",
    "movement_timeout": 30.0,
    "pause_timeout": 60.0,
    "resume_timeout": 30.0,
    "capture_folder": "layercapture",
}

StatusPredicate = Callable[[Dict[str, Any]], bool]


def capturing(layer: int = 3, index: int = 2, phase: str = "capturing") -> StatusPredicate:
    """Matches the status pushed when the sequence of ``layer`` reaches position ``index``."""

    def matches(status: Dict[str, Any]) -> bool:
        return (
            status.get("state") == "capturing"
            and status.get("layer") == layer
            and status.get("phase") == phase
            and int(status.get("index") or 0) >= index
        )

    return matches


def _status(message: Message) -> Optional[Dict[str, Any]]:
    if message.kind != "plugin" or message.name != "layercapture":
        return None
    payload = message.payload or {}
    return payload.get("status") if payload.get("type") == "status" else None


@dataclass
class FaultRun:
    server: OctoPrintServer
    end: Message
    statuses: List[Dict[str, Any]]
    metadata: List[Tuple[Path, Dict[str, Any]]]  # sorted by layer
    steps: List[Step]
    blocks: List[Block]
    log: str
    root: Path
    analysis: Analysis
    lines: List[str]  # of the printed file

    @property
    def captured(self) -> List[Dict[str, Any]]:
        """The first "captured" status of each layer (the plugin pushes its whole status
        again when the print moves on, so one capture can be seen several times)."""
        first: Dict[Any, Dict[str, Any]] = {}
        for status in self.statuses:
            if status.get("state") == "captured":
                first.setdefault(status.get("layer"), status)
        return list(first.values())

    def meta(self, layer: int) -> Dict[str, Any]:
        found = [m for _p, m in self.metadata if int(m["layer"]) == layer]
        assert found, f"no metadata for layer {layer}: {[m['layer'] for _p, m in self.metadata]}"
        return found[0]

    def failures(self, layer: int) -> List[str]:
        return [str(f["message"]) for f in self.meta(layer)["failures"]]


def files_below(root: Path) -> set:
    return {p for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def run_with_fault(
    server: OctoPrintServer,
    settings: Mapping[str, Any],
    fault: Optional[Callable[[OctoPrintServer], None]] = None,
    at: Optional[StatusPredicate] = None,
    *,
    expect_end: str = "PrintDone",
    sequences: int = 2,
    fixture: Path = TINY,
    end_timeout: float = 90.0,
) -> FaultRun:
    """Prints ``fixture``; once a pushed status matches ``at``, calls ``fault(server)``.

    Waits for the end of the print and for ``sequences`` "captured" statuses (one per
    finished sequence, published after its metadata was written or failed).
    """
    values = {**FAULT_SETTINGS, **settings}
    apply_settings(server, values)
    server.wait_for_state("Operational", 30)
    root = server.uploads_dir / str(values["capture_folder"])
    known = files_below(root)
    log_offset = server.log_size()
    started = time.monotonic()
    mark = server.mark()
    server.start_print(fixture)
    if fault is not None:
        assert at is not None
        server.events.wait_for(
            lambda m: _status(m) is not None and at(_status(m) or {}),
            60,
            since=mark,
            description="the moment to inject the fault",
        )
        fault(server)
    ends = (*END_EVENTS, expect_end)
    end = server.events.wait_for(
        lambda m: m.kind == "event" and m.name in ends,
        end_timeout,
        since=mark,
        description="the end of the print",
    )
    assert end.name == expect_end, f"print ended with {end.short()}, expected {expect_end}"
    if sequences:
        wait_for_captured_layers(server, sequences, since=mark)
    statuses = [s for m in server.events.messages(since=mark) if (s := _status(m)) is not None]
    new_files = files_below(root) - known
    metadata = sorted(
        (
            (p, json.loads(p.read_text(encoding="utf-8")))
            for p in new_files
            if p.suffix == ".json" and "_metadata_" in p.name and not p.name.startswith(".")
        ),
        key=lambda item: int(item[1]["layer"]),
    )
    steps = replay([r for r in server.sent_lines(since=started) if r["tags"]])
    return FaultRun(
        server,
        end,
        statuses,
        metadata,
        steps,
        split_blocks(steps),
        server.log_text(since=log_offset),
        root,
        analyse(fixture),
        fixture.read_text(encoding="utf-8").splitlines(),
    )


# ---- checks ---------------------------------------------------------------------------------


def check_no_partial_files(run: FaultRun) -> None:
    temps = [p for p in files_below(run.root) if p.name.endswith(".tmp")]
    assert temps == [], f"half-written files left: {temps}"
    for path, meta in run.metadata:
        for image in meta["images"]:
            for name in (image["path"], image.get("thumbnail")):
                if not name:
                    continue
                data = (path.parent / name).read_bytes()
                assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", f"{name} incomplete"


def check_failure_reported(run: FaultRun, layer: int, text: str, in_metadata: bool = True) -> None:
    """``text`` (case-insensitive) is in the log, in the UI status and in the metadata."""
    wanted = text.lower()
    assert wanted in run.log.lower(), f"{text!r} not in octoprint.log"
    pushed = [
        f
        for s in run.captured
        if s.get("layer") == layer
        for f in (s.get("failures") or [])
        if wanted in str(f).lower()
    ]
    assert pushed, f"{text!r} not in the pushed status of layer {layer}: {run.captured}"
    if in_metadata:
        assert any(wanted in f.lower() for f in run.failures(layer)), run.failures(layer)


def layer_block(run: FaultRun, layer: int) -> Block:
    """The sent lines of the sequence of ``layer`` (sequences in order of the layers)."""
    layers = [int(s["layer"]) for s in run.captured]
    assert len(run.blocks) == len(layers), f"{len(run.blocks)} sequences for layers {layers}"
    return run.blocks[layers.index(layer)]


def check_head_safe(run: FaultRun, layer: int, returned: bool = True) -> None:
    """No XY travel below the printed top + clearance; back at the stop, or left lifted."""
    block = layer_block(run, layer)
    stop_line = run.analysis.layers[layer].first_extrusion_line  # layer + 1's first extrusion
    limit = run.analysis.highest_printed_z_before(stop_line) + CLEARANCE - 1e-6
    held = code_of(run.lines[stop_line])  # the plugin sends it when the job goes on
    ours = [s for s in block.steps if s.plugin and not same_line(s.line, held)]
    assert ours, f"layer {layer}: the plugin sent nothing"
    low = [s.line for s in ours if s.moves_xy and min(s.before.z, s.after.z) < limit]
    assert low == [], f"layer {layer}: XY travel below Z {limit:g}: {low}"
    start = block.start
    moves = [s for s in ours if s.moves_xy or s.moves_z]
    end = moves[-1].after if moves else start
    back = (
        near(end.x, start.x, SENT_TOLERANCE)
        and near(end.y, start.y, SENT_TOLERANCE)
        and near(end.z, start.z, SENT_TOLERANCE)
    )
    if returned:
        assert back, f"layer {layer}: head at {end}, the job stopped at {start}"
    else:
        assert back or end.z >= limit, f"layer {layer}: head left low at {end}"


# ---- faults that need the machine's help ---------------------------------------------------


def can_mount() -> bool:
    return os.geteuid() == 0


@contextmanager
def tiny_filesystem(folder: Path, size_kb: int, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` mounted on ``folder`` (root only): a real full or read-only
    disk for the capture folder, unmounted afterwards."""
    if not can_mount():
        pytest.skip("mounting a small filesystem needs root")
    mount = require_program("mount")
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    subprocess.run([mount, "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run([require_program("umount"), "-l", str(folder)], check=False)
