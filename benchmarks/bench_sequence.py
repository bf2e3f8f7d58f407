"""Time a capture adds to a layer, on a real OctoPrint with its virtual printer.

For 1x1, 3x3 and 5x5 grids in both stop modes (fake camera), and 3x3 with a camera behind
a local snapshot URL, each captured layer's sequence time (metadata ``timings.total``) is
compared with its floor, measured in the same run:

    floor = the simulated time of the job's own moves still queued in the printer when the
            job stopped (the layer has to be finished anyway)
          + the virtual printer's simulated time for the moves the plugin actually sent
            (it sleeps 10 % of each move's duration; replayed from the sent lines)
          + the configured settle delays (capture_delay + pre_capture_delay per point)
          + the measured camera latency (``timings.capture``)

and what users feel, the time a captured layer adds to the whole print, is the same print
with and without captures in the same run: (with - without) / captured layers.

The baseline of the naive design runs in the same OctoPrint: the same 3x3 grid driven
through OctoPrint's REST API with a fixed sleep after every move (movement timeout +
capture delay + pre-capture delay, the settings' defaults) instead of printer
acknowledgements. While our 3x3 sequences run, OctoPrint's REST API is polled to show it
stays responsive. ``LC_BENCH_QUICK=1`` shortens the naive wait (and says so).

The 1x1 case is the one Octolapse's "Classic - Every Layer" trigger covers (issue 15): one
snapshot position per layer, a snapshot-URL camera, no settle delays, Octolapse's own lift
and retract (z_offset 0.6, retract 2 mm), every layer of a 20-layer print: the time added per
captured layer in both stop modes against the same print with the plugin disabled, three
rounds, alternating.

Beside each grid's measurement goes what a real printer would take for the same moves:
:mod:`capture.estimate` timing the moves each layer sent (from its metadata) under the
virtual printer's profile speeds and Marlin's stock accelerations, plus the delays and the
measured camera time.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests" / "support"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(TESTS))

from capture_checks import (  # noqa: E402
    replay,
    split_blocks,
    wait_for_captured_layers,
)
from common import Row, record  # noqa: E402
from harness import OctoPrintServer  # noqa: E402
from harness.camera_servers import SnapshotServer  # noqa: E402
from rest_poller import RestPoller, p95  # noqa: E402
from small_prints import write_square_print  # noqa: E402

from octoprint_layercapture.camera_settings import camera_entry  # noqa: E402
from octoprint_layercapture.capture.estimate import (  # noqa: E402
    MotionLimits,
    motion_limits,
    profile_feedrates,
    sequence_moves,
    sequence_seconds,
)
from octoprint_layercapture.settings import DEFAULTS  # noqa: E402
from octoprint_layercapture.store.names import parse_metadata_name  # noqa: E402

BENCH = "time added per layer"
LAYERS = 9  # every 2nd layer: 4 captured layers per print
BASE: Dict[str, Any] = {
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "capture_every_n_layers": 2,
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
}


def metadata_files(root: Path) -> List[Path]:
    """The layers' metadata files under ``root`` (not their toolpaths)."""
    if not root.is_dir():
        return []
    return [p for p in root.rglob("*.json") if parse_metadata_name(p.name)]


def capture_print(
    server: OctoPrintServer, folder: Path, settings: Dict[str, Any], layers: int = LAYERS
) -> List[Dict[str, Any]]:
    """Prints the square print with ``settings``; one dict per captured layer:
    total, floor and their parts, and what a real printer would take."""
    response = server.save_plugin_settings({**BASE, **settings})
    assert response.status_code == 200, response.text
    root = server.uploads_dir / "layercapture"
    known = set(metadata_files(root))
    started = time.monotonic()
    mark = server.mark()
    server.start_print(write_square_print(folder, "bench.gcode", layers=layers))
    print_seconds = job_seconds(server, mark)
    every = int({**BASE, **settings}["capture_every_n_layers"])
    wait_for_captured_layers(server, (layers - 1) // every, since=mark)
    metadata = sorted(
        (json.loads(p.read_text()) for p in set(metadata_files(root)) - known),
        key=lambda m: int(m["layer"]),
    )
    steps = replay([r for r in server.sent_lines(since=started) if r["tags"]])
    blocks = split_blocks(steps)
    assert len(blocks) == len(metadata), (len(blocks), len(metadata))
    rows = []
    for meta, block in zip(metadata, blocks):
        drain = still_printing(steps[: block.start_index], block.steps[0].t)
        # grid positions visited (with several cameras, one image of each camera per position)
        indexes = {i["index"] for i in meta["images"]}
        points = len(indexes | {f["index"] for f in meta["failures"] if f["index"] is not None})
        delays = points * (
            meta_setting(settings, "capture_delay") + meta_setting(settings, "pre_capture_delay")
        )
        moves = block.simulated_move_seconds(held=True)
        camera = float(meta["timings"]["capture"])
        plugin_times = [s.t for s in block.steps if s.plugin]
        rows.append(
            {
                "total": float(meta["timings"]["total"]),
                "floor": drain + moves + delays + camera,
                "drain": drain,
                "moves": moves,
                "camera": camera,
                "window": (min(plugin_times), max(plugin_times)),
                "phases": {k: float(v) for k, v in meta["timings"].items() if k != "total"},
                "print_seconds": print_seconds,
                "real": real_printer_seconds(server, meta, settings, delays + camera),
            }
        )
    return rows


def real_printer_seconds(
    server: OctoPrintServer, meta: Dict[str, Any], settings: Dict[str, Any], waits: float
) -> float:
    """The layer's moves (its stop, the positions it visited, its travel height) as a real
    printer with the virtual printer's profile speeds and Marlin's stock accelerations would
    run them, plus ``waits`` (the delays and the camera time measured)."""
    stop = meta["return_position"] or meta["stop_position"]
    first = {}  # one image per position visited (the first camera's, or any)
    for image in sorted(meta["images"], key=lambda image: image["captured_at"]):
        first.setdefault(image["index"], image)
    visited = sorted(first.values(), key=lambda image: image["captured_at"])
    path = sequence_moves(
        (float(stop["x"]), float(stop["y"]), float(stop["z"])),
        [(float(i["position"]["x"]), float(i["position"]["y"])) for i in visited],
        float(meta["travel_z"]),
        movement_speed=meta_setting(settings, "movement_speed"),
        z_speed=meta_setting(settings, "z_speed"),
        retract_length=meta_setting(settings, "retract_length"),
        retract_speed=meta_setting(settings, "retract_speed"),
    )
    return sequence_seconds(path, profile_limits(server)) + waits


def profile_limits(server: OctoPrintServer) -> MotionLimits:
    """The virtual printer reports no limits: its profile's axis speeds, Marlin's stock
    accelerations."""
    profiles = server.get_json("/api/printerprofiles")["profiles"]
    [profile] = [p for p in profiles.values() if p.get("default")]
    return motion_limits(None, profile_feedrates(profile))


def job_seconds(server: OctoPrintServer, mark: int) -> float:
    """PrintStarted to PrintDone, from OctoPrint's events."""
    done = server.wait_print_done(timeout=300, since=mark)
    started = server.wait_for_event("PrintStarted", 5, since=mark)
    return done.t - started.t


def print_without_captures(server: OctoPrintServer, folder: Path, layers: int = LAYERS) -> float:
    server.save_plugin_settings({**BASE, "enabled": False})
    mark = server.mark()
    server.start_print(write_square_print(folder, "bench.gcode", layers=layers))
    seconds = job_seconds(server, mark)
    server.save_plugin_settings({"enabled": True})
    return seconds


def still_printing(job_steps: List[Any], stopped_at: float) -> float:
    """Simulated seconds of the job's own moves the printer still had to run when the job
    stopped: it queues moves as they arrive and runs them one after another, so a move
    finishes at max(previous finish, arrival) + its simulated duration. Unavoidable, and
    not time the capture adds: it is part of the floor."""
    finish = 0.0
    for step in job_steps:
        if step.vp_seconds > 0:
            finish = max(finish, step.t) + step.vp_seconds
    return max(0.0, finish - stopped_at)


def meta_setting(settings: Dict[str, Any], key: str) -> float:
    return float(settings.get(key, BASE.get(key, DEFAULTS[key])))


def report_grid(label: str, rows: List[Dict[str, Any]], target: str = "") -> Tuple[float, float]:
    total = statistics.median(r["total"] for r in rows)
    floor = statistics.median(r["floor"] for r in rows)
    phases = {k: statistics.median(r["phases"][k] for r in rows) for k in rows[0]["phases"]}
    moves = statistics.median(r["moves"] for r in rows)
    print(
        f"  {label}: phases "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in phases.items())
        + f"; simulated moves {moves * 1000:.0f} ms, printer finishing the layer "
        + f"{statistics.median(r['drain'] for r in rows) * 1000:.0f} ms"
    )
    record(
        Row(
            BENCH,
            f"{label}: sequence (median of {len(rows)} layers)",
            total,
            "s",
            "floor: simulated moves + delays + camera",
            floor,
            target=target,
            ratio_of_baseline=True,
        )
    )
    record(
        Row(
            BENCH,
            f"{label}: a real printer's moves (estimate), delays and camera",
            statistics.median(r["real"] for r in rows),
            "s",
            "the virtual printer's sequence",
            total,
            note="trapezoidal moves at the profile's axis speeds, Marlin's stock accelerations",
            ratio_of_baseline=True,
        )
    )
    return total, floor


# ---- the 1x1 case, as Octolapse's "Classic - Every Layer" --------------------------------------

ONE_BY_ONE_LAYERS = 20
OCTOLAPSE_LIKE: Dict[str, Any] = {
    "grid_size": 1,
    "z_offset": 0.6,
    "retract_length": 2.0,
    "capture_every_n_layers": 1,
}
OCTOLAPSE_ADDED_S = 0.031  # issue 15: Octolapse 0.4.5 on this machine, same conditions


def added_per_layer(
    server: OctoPrintServer, folder: Path, settings: Dict[str, Any], rounds: int = 3
) -> float:
    """Median over ``rounds`` of (print with captures - print without) / captured layers,
    the two prints alternating so a slow spell of the machine hits both."""
    added: List[float] = []
    for _ in range(rounds):
        without = print_without_captures(server, folder, ONE_BY_ONE_LAYERS)
        rows = capture_print(server, folder, settings, layers=ONE_BY_ONE_LAYERS)
        added.append((rows[0]["print_seconds"] - without) / len(rows))
    return statistics.median(added)


def one_by_one(server: OctoPrintServer, folder: Path, snapshot_url: str, plain: float) -> None:
    per_layer = plain / ONE_BY_ONE_LAYERS
    added: Dict[str, float] = {}
    for mode in ("hold", "pause"):
        added[mode] = added_per_layer(
            server,
            folder,
            {
                **OCTOLAPSE_LIKE,
                "stop_mode": mode,
                "cameras": [camera_entry(type="snapshot", url=snapshot_url)],
            },
        )
        record(
            Row(
                BENCH,
                f"1x1 {mode}, Octolapse's lift and retract, snapshot URL: time added per "
                "captured layer (whole print, median of 3)",
                added[mode],
                "s",
                "the same print without captures, per layer",
                per_layer,
                target=f"<= {OCTOLAPSE_ADDED_S} s (Octolapse 0.4.5, issue 15)",
                ratio_of_baseline=True,
            )
        )
    record(
        Row(
            BENCH,
            "1x1: pause vs hold (time added per captured layer)",
            added["pause"],
            "s",
            "hold",
            added["hold"],
            target="<= 1.1x",
            ratio_of_baseline=True,
        )
    )


# ---- REST latency while sequences run ------------------------------------------------------


# ---- the naive design --------------------------------------------------------------------------


def naive_layer(server: OctoPrintServer, wait: float, size: int = 3) -> float:
    """One layer captured the naive way, with the plugin switched off: pause, then every
    move followed by a fixed sleep, a snapshot of the fake camera, back, resume."""
    from octoprint_layercapture.cameras.sources import FakeCamera
    from octoprint_layercapture.capture.ports import ShotRequest

    server.save_plugin_settings({"enabled": False})
    mark = server.mark()
    server.start_print(write_square_print(Path(tempfile.mkdtemp()), "naive.gcode", layers=LAYERS))
    server.wait_for_event("ZChange", 60, lambda p: (p or {}).get("new") == 0.6, since=mark)

    def command(*lines: str) -> None:
        response = server.api("POST", "/api/printer/command", json={"commands": list(lines)})
        assert response.status_code == 204, response.text

    started = time.monotonic()
    server.api("POST", "/api/job", json={"command": "pause", "action": "pause"})
    paused = server.wait_for_event("PrintPaused", 60, since=mark)
    stop = paused.payload["position"]
    camera = FakeCamera(90, None, [])
    offsets = [(i - size // 2) * 20.0 for i in range(size)]
    travel = float(stop["z"]) + 5.0
    command("G90", f"G0 Z{travel:g} F600")
    time.sleep(wait)
    for index, (dy, dx) in enumerate((dy, dx) for dy in offsets for dx in offsets):
        x, y = 100.0 + dx, 100.0 + dy
        command(f"G0 X{x:g} Y{y:g} F6000")
        time.sleep(wait)
        camera.take(ShotRequest(3, 0.6, index, size * size, x, y, travel))
    command(f"G0 X{stop['x']} Y{stop['y']} F6000")
    time.sleep(wait)
    command(f"G0 Z{stop['z']} F600")
    time.sleep(wait)
    server.api("POST", "/api/job", json={"command": "pause", "action": "resume"})
    server.wait_for_event("PrintResumed", 60, since=mark)
    seconds = time.monotonic() - started
    server.wait_print_done(timeout=300, since=mark)
    server.save_plugin_settings({"enabled": True})
    return seconds


def main() -> None:
    quick = os.environ.get("LC_BENCH_QUICK") == "1"
    naive_wait = (
        2.0
        if quick
        else (
            DEFAULTS["movement_timeout"] + DEFAULTS["capture_delay"] + DEFAULTS["pre_capture_delay"]
        )
    )
    work = Path(tempfile.mkdtemp(prefix="lc-bench-"))
    server = OctoPrintServer(
        work / "octoprint",
        # the simulated link errors would land in some sequences and not others
        virtual_printer={"simulated_errors": []},
        name="bench",
    )
    server.start()
    server.connect()
    try:
        results: Dict[str, Tuple[float, float]] = {}
        plain = statistics.median(print_without_captures(server, work) for _ in range(3))
        for mode in ("pause", "hold"):
            for size in (1, 3, 5):
                label = f"{size}x{size} {mode}, fake camera"
                if size == 3:
                    with RestPoller(server) as poller:
                        rows = capture_print(server, work, {"grid_size": 3, "stop_mode": mode})
                    assert not poller.errors, poller.errors[:3]
                    during = poller.during([r["window"] for r in rows])
                    idle = [s for t, s in poller.samples if t < rows[0]["window"][0] - 1]
                    record(
                        Row(
                            "REST during captures",
                            f"GET /api/printer p95 while {mode} sequences run "
                            f"({len(during)} requests)",
                            p95(during) * 1000,
                            "ms",
                            "same, printing without a capture",
                            p95(idle) * 1000 if idle else None,
                            target="< 100 ms",
                            ratio_of_baseline=True,
                        )
                    )
                    results[mode] = report_grid(label, rows, target="<= 1.10x the floor")
                    added = (rows[0]["print_seconds"] - plain) / len(rows)
                    record(
                        Row(
                            BENCH,
                            f"3x3 {mode}: whole print, time added per captured layer",
                            added,
                            "s",
                            "the same print without captures, per layer",
                            plain / LAYERS,
                            ratio_of_baseline=True,
                        )
                    )
                else:
                    report_grid(
                        label,
                        capture_print(server, work, {"grid_size": size, "stop_mode": mode}),
                        target="<= 1.10x the floor" if size == 5 else "",
                    )
        with SnapshotServer() as snapshots:
            one_by_one(server, work, snapshots.url("jpeg"), plain)
            for mode in ("pause", "hold"):
                settings = {
                    "grid_size": 3,
                    "stop_mode": mode,
                    "cameras": [camera_entry(type="snapshot", url=snapshots.url("jpeg"))],
                }
                report_grid(
                    f"3x3 {mode}, snapshot URL camera", capture_print(server, work, settings)
                )
        record(
            Row(
                BENCH,
                "3x3: hold vs pause (sequence)",
                results["hold"][0],
                "s",
                "pause",
                results["pause"][0],
                ratio_of_baseline=True,
            )
        )
        naive = naive_layer(server, naive_wait)
        record(
            Row(
                BENCH,
                "3x3 pause: ours (confirmed moves)",
                results["pause"][0],
                "s",
                f"naive fixed sleeps of {naive_wait:g} s per move"
                + (" (LC_BENCH_QUICK)" if quick else " (defaults)"),
                naive,
            )
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
