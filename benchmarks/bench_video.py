"""The grid video of a 5x5 print with 1080p frames, rendered by a real OctoPrint, against
OctoPrint's own timelapse render of as many frames of the same size in the same run.

* **Ours**: a capture folder of one 5x5 print with LAYERS captured layers of 1920x1080
  camera-like JPEGs (gradients, shapes, noise: about 300 KB each); OctoPrint (with
  ``webcam.ffmpeg`` = Debian's ffmpeg and its default bitrate and threads) renders its
  grid video through ``POST prints/<id>/videos`` (``{"target": "grid"}``): a 1920x1080
  video of LAYERS frames, each tiling 25 camera frames. The render's own time (frames laid
  out, ffmpeg, files saved) over its frames.
* **Baseline**: OctoPrint's timelapse renderer's command line
  (``octoprint.timelapse.TimelapseRenderJob._create_ffmpeg_command_string`` with OctoPrint's
  default ``webcam.ffmpegCommandline``, libx264, the same fps, bitrate and threads) on
  LAYERS 1920x1080 JPEGs of the same kind: what OctoPrint's own timelapse of that many
  frames at that size costs. Run as OctoPrint runs it (not niced); ours runs niced.
* **REST while rendering**: ``GET /api/printer`` every 20 ms during our renders (p95),
  against the same while nothing renders (the virtual printer connected, idle).

Rounds alternate ours and the baseline (ROUNDS each); medians are reported.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from common import Row, machine_summary, record  # noqa: E402
from gallery_tree import build_print  # noqa: E402
from harness import OctoPrintServer  # noqa: E402
from harness.camera_servers import make_jpeg  # noqa: E402
from rest_poller import RestPoller, p95  # noqa: E402
from system_packages import find_program, missing_message  # noqa: E402
from video_checks import FFMPEG, probe  # noqa: E402

from octoprint_layercapture.store.names import parse_image_name  # noqa: E402

LAYERS = int(os.environ.get("LC_BENCH_VIDEO_LAYERS", "24"))
ROUNDS = int(os.environ.get("LC_BENCH_VIDEO_ROUNDS", "3"))
GRID = 5
FRAME = (1920, 1080)
FPS = 25
BITRATE = "10000k"  # OctoPrint's defaults (webcam.bitrate, ffmpegThreads)
THREADS = 1
BASE = "/plugin/layercapture"
REST_TARGET_MS = 100.0


def frame_pool(folder: Path, count: int) -> List[Path]:
    """``count`` different camera-like 1080p JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = []
    for seed in range(count):
        path = folder / f"frame_{seed:03d}.jpg"
        path.write_bytes(make_jpeg(FRAME, quality=85, seed=seed + 1))
        pool.append(path)
    return pool


def build_capture_folder(root: Path, pool: List[Path]) -> None:
    """One 5x5 print of LAYERS layers; every image a hard link to a pool frame."""
    built = build_print(root, "bench_5x5.gcode", datetime(2024, 1, 1, 9), LAYERS, grid_size=GRID)
    for n, path in enumerate(sorted(built.images)):
        index = parse_image_name(path.name).index  # type: ignore[union-attr]
        path.unlink()
        os.link(pool[(n + index) % len(pool)], path)


def octoprint_command(frames: Path, output: Path) -> List[str]:
    """OctoPrint's own timelapse command line for ``frames/tmp_%d.jpg``."""
    from octoprint.schema.config.webcam import WebcamConfig
    from octoprint.timelapse import TimelapseRenderJob

    command = TimelapseRenderJob._create_ffmpeg_command_string(
        WebcamConfig().ffmpegCommandline,
        FFMPEG,
        FPS,
        BITRATE,
        THREADS,
        str(frames / "tmp_%d.jpg"),
        str(output),
        "libx264",
    )
    return shlex.split(command)


def baseline_render(pool: List[Path], work: Path) -> Tuple[float, float]:
    """Seconds and ffmpeg's CPU seconds for OctoPrint's timelapse render of LAYERS 1080p
    frames."""
    frames = work / "timelapse"
    shutil.rmtree(frames, ignore_errors=True)
    frames.mkdir(parents=True)
    for k in range(LAYERS):
        os.link(pool[k % len(pool)], frames / f"tmp_{k}.jpg")
    output = work / "timelapse.mp4"
    command = octoprint_command(frames, output)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    assert process.returncode == 0, process.returncode
    info = probe(output)
    assert (info["width"], info["height"], info["nb_read_frames"]) == (*FRAME, LAYERS), info
    return seconds, usage.ru_utime + usage.ru_stime


def our_render(server: OctoPrintServer, pid: str) -> Tuple[float, float, int, Tuple[float, float]]:
    """(render seconds, ffmpeg CPU seconds, frames, (start, end) window) of one grid render
    through the API."""
    mark = server.mark()
    started = time.monotonic()
    response = server.api("POST", f"{BASE}/prints/{pid}/videos", json={"target": "grid"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]
    message = server.wait_for_plugin_message(
        600,
        lambda d: (
            d.get("type") == "video"
            and d["job"]["id"] == job_id
            and d["job"]["state"] in ("done", "failed", "cancelled")
        ),
        since=mark,
    )
    ended = time.monotonic()
    job = message.payload["job"]
    assert job["state"] == "done", job
    seconds, cpu, frames = job["render_seconds"], job["cpu_seconds"], job["frames_total"]
    return float(seconds), float(cpu), int(frames), (started, ended)


def main() -> int:
    for program in ("ffmpeg", "ffprobe"):
        if find_program(program) is None:
            raise SystemExit(missing_message(program))
    print(f"machine: {machine_summary()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lc-bench-video-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        pool = frame_pool(work / "pool", 12)
        server = OctoPrintServer(
            work / "octoprint",
            name="bench-video",
            config_overrides={"webcam": {"ffmpeg": FFMPEG}},
            plugin_settings={"video_fps": FPS},
        )
        server.prepare()
        build_capture_folder(server.uploads_dir / "layercapture", pool)
        size = sum(p.stat().st_size for p in pool) // len(pool)
        print(
            f"  {GRID}x{GRID} print, {LAYERS} layers of {FRAME[0]}x{FRAME[1]} JPEGs "
            f"(~{size // 1024} KB) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        server.start()
        try:
            server.connect()  # the virtual printer, operational: what the REST poller asks
            pid = server.get_json(f"{BASE}/prints")["prints"][0]["id"]
            ours: List[float] = []
            baseline: List[float] = []
            ours_cpu: List[float] = []
            baseline_cpu: List[float] = []
            windows: List[Tuple[float, float]] = []
            with RestPoller(server) as poller:
                time.sleep(3.0)  # the idle REST baseline, nothing rendering
                idle_until = time.monotonic()
                for round_number in range(ROUNDS):
                    seconds, cpu, frames, window = our_render(server, pid)
                    assert frames == LAYERS, frames
                    ours.append(seconds / frames)
                    ours_cpu.append(cpu / frames)
                    windows.append(window)
                    seconds, cpu = baseline_render(pool, work)
                    baseline.append(seconds / LAYERS)
                    baseline_cpu.append(cpu / LAYERS)
                    print(
                        f"  round {round_number + 1}: ours {ours[-1] * 1000:.0f} ms/frame "
                        f"(CPU {ours_cpu[-1] * 1000:.0f} ms), OctoPrint's timelapse "
                        f"{baseline[-1] * 1000:.0f} ms/frame "
                        f"(CPU {baseline_cpu[-1] * 1000:.0f} ms)",
                        flush=True,
                    )
            idle = [s for t, s in poller.samples if t < idle_until]
            during = poller.during(windows)
            print(
                f"  REST: {len(poller.samples)} requests, {len(idle)} idle, {len(during)} "
                f"while rendering, errors: {poller.errors[:3]}",
                flush=True,
            )
            assert during and not poller.errors, "the REST poller measured nothing"
            grid = server.get_json(f"{BASE}/prints/{pid}/videos")["videos"][0]
            assert (grid["width"], grid["height"], grid["frame_count"]) == (*FRAME, LAYERS), grid
        finally:
            server.stop()
        record(
            Row(
                "video",
                f"grid video, {GRID}x{GRID} print, {FRAME[0]}x{FRAME[1]} frames: render time "
                f"per frame ({LAYERS} frames, {GRID * GRID} camera JPEGs each)",
                median(ours) * 1000,
                "ms",
                baseline=f"OctoPrint's timelapse render, {LAYERS} {FRAME[0]}x{FRAME[1]} frames",
                baseline_value=median(baseline) * 1000,
                ratio_of_baseline=True,
                note=f"median of {ROUNDS} rounds; ours niced, the baseline not",
            )
        )
        record(
            Row(
                "video",
                "the same, ffmpeg's CPU time per frame (user + system)",
                median(ours_cpu) * 1000,
                "ms",
                baseline="OctoPrint's timelapse render, the same frames",
                baseline_value=median(baseline_cpu) * 1000,
                ratio_of_baseline=True,
                note="does not depend on the machine's other load",
            )
        )
        record(
            Row(
                "video",
                "GET /api/printer p95 while the grid video renders",
                p95(during) * 1000,
                "ms",
                baseline="the same, nothing rendering",
                baseline_value=p95(idle) * 1000 if idle else None,
                ratio_of_baseline=True,
                target=f"< {REST_TARGET_MS:g} ms",
                note=f"{len(during)} requests during, {len(idle)} idle",
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
