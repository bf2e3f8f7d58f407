"""The render queue and its thread (analysis/video/renderer.py), with Debian's ffmpeg and with
stand-ins for ffmpeg that are slow, fail or miscount: what is written, what is left, the
gate, cancelling, niceness."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from gallery_tree import BuiltPrint, build_print, small_jpeg
from PIL import Image
from video_checks import FFMPEG, probe, require_ffmpeg

from octoprint_layercapture.analysis.video.jobs import IndexGallery, RenderConfig, RenderRefused
from octoprint_layercapture.analysis.video.plan import RenderTarget, plan_grid_layout
from octoprint_layercapture.analysis.video.renderer import THREAD_NAME, VideoRenderer
from octoprint_layercapture.store.index import CaptureIndex
from octoprint_layercapture.store.names import parse_image_name


@pytest.fixture(autouse=True, scope="module")
def _ffmpeg() -> None:
    """Debian's ffmpeg and ffprobe (debian-packages.txt): a skip, or a failure in CI."""
    require_ffmpeg()


# one colour per grid position, so a grid frame shows where each tile went
COLOURS = [
    (220, 30, 30),
    (30, 200, 30),
    (30, 30, 220),
    (220, 220, 30),
    (220, 30, 220),
    (30, 220, 220),
    (250, 140, 20),
    (140, 20, 250),
    (20, 250, 140),
]
FRAME = (96, 72)
ALL = RenderTarget("all")
ENDED = ("done", "failed", "cancelled")


def coloured_print(
    root: Path, name: str, layers: int, skip_index: Optional[int] = None, hour: int = 9
) -> BuiltPrint:
    start = datetime(2024, 1, 1, hour, 0, 0)  # prints apart: file names hold the time
    built = build_print(root, name, start, layers, skip_index=skip_index)
    for path in built.images:
        index = parse_image_name(path.name).index  # type: ignore[union-attr]
        path.write_bytes(small_jpeg(COLOURS[index], FRAME))
    return built


def drop_image(built: BuiltPrint, layer_number: int, index: int, message: str) -> None:
    """Turns one image of a built print into a camera failure."""
    meta_path = next(p for p in built.metadata if f"layer_{layer_number:04d}_" in p.name)
    meta = json.loads(meta_path.read_text())
    image = next(i for i in meta["images"] if i["index"] == index)
    meta["images"].remove(image)
    meta["failures"] = [{"index": index, "phase": "capture", "message": message}]
    meta_path.write_text(json.dumps(meta))
    (meta_path.parent / image["path"]).unlink()


def fake_ffmpeg(folder: Path, frames: int, delay: float, code: int = 0, stderr: str = "") -> str:
    """A stand-in for ffmpeg: starts its output, reports ``frames`` frames ``delay`` s apart
    in its progress file (and its pid beside it), prints ``stderr``, finishes the output
    when ``code`` is 0."""
    script = folder / f"fake-ffmpeg-{frames}-{code}"
    script.write_text(
        "#!/bin/sh\n"
        'prev=""; progress=""; out=""\n'
        'for a in "$@"; do [ "$prev" = "-progress" ] && progress="$a"; prev="$a"; out="$a"; done\n'
        'echo $$ > "$progress.pid"\n'
        'printf half > "$out"\n'  # as ffmpeg: the output grows while it renders
        "i=0\n"
        f"while [ $i -lt {frames} ]; do i=$((i+1)); "
        f"printf 'frame=%d\\nprogress=continue\\n' $i >> \"$progress\"; sleep {delay}; done\n"
        "printf 'frame=%d\\nprogress=end\\n' $i >> \"$progress\"\n"
        f"printf '%s\\n' '{stderr}' >&2\n"
        f'if [ {code} -eq 0 ]; then printf video > "$out"; fi\n'
        f"exit {code}\n"
    )
    script.chmod(0o755)
    return str(script)


class Rig:
    """A capture folder, its index and a running renderer with a gate the test sets."""

    def __init__(self, tmp_path: Path, poll: float = 0.05) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "captures"
        self.work = tmp_path / "data"
        self.index = CaptureIndex(self.root)
        self.gate: Optional[str] = None
        self.config = RenderConfig(FFMPEG, "500k", 1, 10, 0.0)
        self.updates: List[Dict[str, Any]] = []
        self.renderer = VideoRenderer(
            IndexGallery(lambda: self.index),
            lambda: self.config,
            self.work,
            lambda: self.gate,
            self.updates.append,
            push_interval=0.0,
            poll_interval=poll,
        )

    def add_print(self, name: str = "box.gcode", layers: int = 3, **kw: Any) -> BuiltPrint:
        built = coloured_print(self.root, name, layers, **kw)
        self.index.rebuild()
        return built

    def pid(self, name: str = "box.gcode") -> str:
        return next(p["id"] for p in self.index.prints().items if p["gcode_file"] == name)

    def wait(
        self, job_id: int, check: Callable[[Dict[str, Any]], bool], timeout: float = 60
    ) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.renderer.jobs()
            found = [j for j in [jobs["current"], *jobs["queue"], *jobs["recent"]] if j]
            job = next((j for j in found if j["id"] == job_id), None)
            if job is not None and check(job):
                return job
            ended = job is not None and job["state"] in ENDED
            assert not ended and time.monotonic() < deadline, f"job {job_id}: {job}"
            time.sleep(0.02)

    def render(self, target: RenderTarget = ALL, name: str = "box.gcode") -> Dict[str, Any]:
        job = self.renderer.submit(self.pid(name), target)
        return self.wait(job["id"], lambda j: j["state"] in ENDED)

    def leftovers(self) -> List[Path]:
        temps = [p for p in self.root.rglob("*") if p.name.endswith(".tmp")]
        return temps + list(self.work.glob("render-*"))


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    handle = Rig(tmp_path)
    handle.renderer.start()
    yield handle
    handle.renderer.stop()


def frame_png(video: Path, number: int) -> Image.Image:
    out = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-i",
            str(video),
            "-vf",
            f"select=eq(n\\,{number})",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return Image.open(io.BytesIO(out)).convert("RGB")


def near(pixel: Any, colour: Any, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def proc_state(pid: int) -> Optional[str]:
    """State letter (R, S, T...) and niceness of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0]


def wait_stopped(pid: int, within: float) -> None:
    """Until the process shows T: a SIGSTOP takes effect once the process leaves an
    uninterruptible sleep (D, e.g. writing its output to disk)."""
    started = time.monotonic()
    while proc_state(pid) != "T":
        assert time.monotonic() - started < within, proc_state(pid)
        time.sleep(0.002)


def proc_nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def fake_pid(rig: Rig, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = list(rig.work.glob("render-*/*.progress.pid"))
        if found and found[0].read_text().strip():
            return int(found[0].read_text())
        assert time.monotonic() < deadline, "the stand-in ffmpeg did not start"
        time.sleep(0.02)


# ---- real renders ------------------------------------------------------------------------


def test_all_videos_are_h264_with_one_frame_per_layer_plus_the_hold(rig: Rig):
    built = rig.add_print(layers=3, skip_index=8)
    drop_image(built, 6, 4, "camera timed out")
    rig.index.rebuild()
    rig.config = RenderConfig(FFMPEG, "500k", 1, 10, 0.2)  # 2 held frames
    job = rig.render()
    assert job["state"] == "done", job
    assert job["frames_done"] == job["frames_total"] == 9 * 5 and job["percent"] == 100
    assert job["cpu_seconds"] > 0  # ffmpeg's own, from its rusage
    videos = rig.index.videos(rig.pid())
    assert [(v["kind"], v["index"]) for v in videos] == [("grid", None)] + [
        ("position", i)
        for i in range(8)  # position 8 was never photographed
    ]
    layout = plan_grid_layout(3, FRAME)
    for video in videos:
        info = probe(rig.root / video["path"])
        assert (info["codec_name"], info["pix_fmt"], info["nb_read_frames"]) == (
            "h264",
            "yuv420p",
            5,
        )
        size = (layout.width, layout.height) if video["index"] is None else FRAME
        assert (info["width"], info["height"]) == size
        assert video["frame_count"] == 5 and video["layers"] == [3, 6, 9]
        frames = json.loads((rig.root / video["metadata"]).read_text())["frames"]
        assert [f["layer"] for f in frames] == [3, 6, 9]
    four = json.loads((rig.root / videos[5]["metadata"]).read_text())
    assert four["index"] == 4 and four["frames"][1] == {
        "frame": 1,
        "layer": 6,
        "z_height": 1.2,
        "metadata": built.metadata[1].relative_to(rig.root).as_posix(),
        "image": None,
        "missing": "camera timed out",
    }
    assert all((rig.root / f["image"]).is_file() for f in four["frames"] if f["image"])
    assert rig.leftovers() == []
    assert (rig.root / videos[0]["path"]).parent.name == built.metadata[0].parent.name
    states = [u["state"] for u in rig.updates]
    assert states[0] == "queued" and "preparing" in states and "rendering" in states
    assert states[-1] == "done"


def test_grid_tiles_lie_as_on_the_bed_and_missing_shots_are_labelled_blanks(rig: Rig):
    built = rig.add_print(layers=2, skip_index=8)
    drop_image(built, 6, 4, "camera timed out")
    rig.index.rebuild()
    assert rig.render()["state"] == "done"
    grid, *positions = rig.index.videos(rig.pid())
    layout = plan_grid_layout(3, FRAME)
    for k in (0, 1):
        frame = frame_png(rig.root / grid["path"], k)
        for index in range(9):
            x, y = layout.origin(index)
            centre = frame.getpixel((x + layout.tile_width // 2, y + layout.tile_height // 2))
            if index == 8 or (index == 4 and k == 1):
                assert not any(near(centre, c) for c in COLOURS), (k, index, centre)
            else:
                assert near(centre, COLOURS[index]), (k, index, centre)
    four = rig.root / positions[4]["path"]
    assert near(frame_png(four, 0).getpixel((48, 36)), COLOURS[4])
    blank = frame_png(four, 1)
    assert not near(blank.getpixel((5, 5)), COLOURS[4])
    assert max(sum(blank.getpixel((x, 36))) for x in range(96)) > 400  # its label


def test_a_data_folder_with_a_percent_sign_still_renders(tmp_path: Path):
    rig = Rig(tmp_path / "50%d done")  # ffmpeg's image sequences are % patterns
    rig.renderer.start()
    try:
        rig.add_print(layers=2)
        job = rig.render(RenderTarget("position", 0))
        assert job["state"] == "done", job
        assert probe(rig.root / rig.index.videos(rig.pid())[0]["path"])["nb_read_frames"] == 2
    finally:
        rig.renderer.stop()


def test_one_position_renders_that_video_only(rig: Rig):
    rig.add_print(layers=2)
    job = rig.render(RenderTarget("position", 4))
    assert job["state"] == "done" and len(job["videos"]) == 1
    assert job["videos"][0].endswith("_pos_04.mp4")
    assert [v["index"] for v in rig.index.videos(rig.pid())] == [4]


# ---- refusals and failures -----------------------------------------------------------------


def test_a_missing_ffmpeg_is_refused_with_the_setting_to_fix_and_nothing_queued(rig: Rig):
    rig.add_print(layers=1)
    for path, words in ((None, "no ffmpeg set"), (str(rig.tmp / "nope"), "not found")):
        rig.config = RenderConfig(path, "500k", 1, 10, 0.0)
        with pytest.raises(RenderRefused) as refused:
            rig.renderer.submit(rig.pid(), ALL)
        assert refused.value.status == 409 and words in refused.value.message
        assert "Path to FFMPEG" in refused.value.message
    assert rig.renderer.jobs() == {"current": None, "queue": [], "recent": []}
    assert rig.updates == [] and not rig.work.exists()


def test_targets_the_print_does_not_have_are_refused(rig: Rig):
    rig.add_print(layers=1, skip_index=8)
    with pytest.raises(RenderRefused) as refused:
        rig.renderer.submit(rig.pid(), RenderTarget("position", 8))
    assert (refused.value.status, refused.value.message) == (
        400,
        "index 8 (position 9) has no image in this print",
    )
    with pytest.raises(RenderRefused) as unknown:
        rig.renderer.submit("0" * 16, ALL)
    assert unknown.value.status == 404
    assert rig.renderer.jobs()["queue"] == []


def test_a_failing_ffmpeg_fails_with_its_message_and_the_old_videos_stay(rig: Rig):
    rig.add_print(layers=2)
    assert rig.render()["state"] == "done"
    before = {p: p.read_bytes() for p in rig.root.rglob("video_*")}
    failing = fake_ffmpeg(rig.tmp, frames=1, delay=0.01, code=1, stderr='Unknown encoder "libx264"')
    rig.config = RenderConfig(failing, "500k", 1, 10, 0.0)
    job = rig.render()
    assert job["state"] == "failed"
    assert job["error"] == (
        'ffmpeg failed on the position 1 video (exit code 1): Unknown encoder "libx264"'
    )
    assert {p: p.read_bytes() for p in rig.root.rglob("video_*")} == before
    assert rig.leftovers() == []


def test_ffmpeg_writing_fewer_frames_than_planned_is_a_failure(rig: Rig):
    rig.add_print(layers=3)
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=2, delay=0.01), "500k", 1, 10, 0.0)
    job = rig.render(RenderTarget("position", 0))
    assert job["state"] == "failed"
    assert job["error"] == "ffmpeg wrote 2 frames for the position 1 video, 3 were planned"
    assert list(rig.root.rglob("video_*")) == [] and rig.leftovers() == []


# ---- cancel, gate, priority ----------------------------------------------------------------


def test_cancel_mid_render_kills_ffmpeg_and_leaves_nothing_behind(rig: Rig):
    rig.add_print(layers=2)
    assert rig.render(RenderTarget("position", 1))["state"] == "done"
    before = {p: p.read_bytes() for p in rig.root.rglob("video_*")}
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=400, delay=0.05), "500k", 1, 10, 0.0)
    job = rig.renderer.submit(rig.pid(), ALL)
    rig.wait(job["id"], lambda j: j["frames_done"] > 0)
    pid = fake_pid(rig)
    assert proc_state(pid) in ("R", "S", "D")
    assert rig.renderer.cancel(job["id"]) is not None
    ended = rig.wait(job["id"], lambda j: j["state"] in ENDED, timeout=10)
    assert ended["state"] == "cancelled" and ended["error"] is None
    assert proc_state(pid) is None  # killed and reaped
    assert rig.leftovers() == []
    assert {p: p.read_bytes() for p in rig.root.rglob("video_*")} == before
    assert rig.renderer.cancel(job["id"]) is None  # nothing left to cancel


def test_the_gate_keeps_a_job_waiting_and_stops_ffmpeg_while_closed(rig: Rig):
    rig.add_print(layers=1)
    # 1 layer and 3 s held at 10 fps: the 31 frames the stand-in reports
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=31, delay=0.05), "500k", 1, 10, 3.0)
    rig.gate = "a capture sequence is running"
    job = rig.renderer.submit(rig.pid(), RenderTarget("position", 0))
    waiting = rig.wait(job["id"], lambda j: j["state"] == "waiting")
    assert waiting["reason"] == "a capture sequence is running"
    time.sleep(0.3)
    assert not rig.work.exists() or list(rig.work.glob("render-*")) == []  # nothing begun
    rig.gate = None
    rig.renderer.wake()
    rig.wait(job["id"], lambda j: j["frames_done"] >= 2)
    pid = fake_pid(rig)
    rig.gate = "a print is running"
    paused = rig.wait(job["id"], lambda j: j["state"] == "paused")
    assert paused["reason"] == "a print is running"
    wait_stopped(pid, within=1.0)
    frames = paused["frames_done"]
    time.sleep(0.4)
    assert rig.renderer.job_for(rig.pid())["frames_done"] <= frames + 1  # type: ignore[index]
    assert proc_state(pid) == "T"
    rig.gate = None
    assert rig.wait(job["id"], lambda j: j["state"] in ENDED)["state"] == "done"


def test_hold_now_stops_ffmpeg_at_once_and_it_goes_on_when_the_gate_opens(tmp_path: Path):
    rig = Rig(tmp_path, poll=2.0)  # the thread looks at the gate only every 2 s by itself
    rig.renderer.start()
    try:
        rig.add_print(layers=1)
        rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=31, delay=0.05), "500k", 1, 10, 3.0)
        job = rig.renderer.submit(rig.pid(), RenderTarget("position", 0))
        pid = fake_pid(rig)
        rig.gate = "a capture sequence is running"
        rig.renderer.hold_now()
        wait_stopped(pid, within=0.2)
        rig.gate = None
        rig.renderer.wake()
        rig.wait(job["id"], lambda j: j["state"] == "done", timeout=30)
    finally:
        rig.renderer.stop()


def test_ffmpeg_runs_at_a_low_priority(rig: Rig):
    rig.add_print(layers=1)
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=40, delay=0.05), "500k", 1, 10, 0.0)
    job = rig.renderer.submit(rig.pid(), RenderTarget("position", 0))
    pid = fake_pid(rig)
    assert proc_nice(pid) >= 10
    rig.renderer.cancel(job["id"])


def test_one_render_per_print_one_at_a_time_in_order(rig: Rig):
    rig.add_print("a.gcode", layers=1)
    rig.add_print("b.gcode", layers=1, hour=11)
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=11, delay=0.05), "500k", 1, 10, 1.0)
    first = rig.renderer.submit(rig.pid("a.gcode"), RenderTarget("position", 0))
    with pytest.raises(RenderRefused) as twice:
        rig.renderer.submit(rig.pid("a.gcode"), ALL)
    assert twice.value.status == 409 and f"(job {first['id']})" in twice.value.message
    second = rig.renderer.submit(rig.pid("b.gcode"), RenderTarget("position", 0))
    assert [j["id"] for j in rig.renderer.jobs()["queue"]] in (
        [second["id"]],
        [first["id"], second["id"]],
    )
    done = rig.wait(second["id"], lambda j: j["state"] == "done")
    first_done = rig.wait(first["id"], lambda j: j["state"] == "done")
    assert first_done["finished_at"] <= done["started_at"]  # never both at once


def test_cancel_print_ends_its_renders_before_its_files_are_deleted(rig: Rig):
    rig.add_print(layers=1)
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=400, delay=0.05), "500k", 1, 10, 0.0)
    job = rig.renderer.submit(rig.pid(), RenderTarget("position", 0))
    fake_pid(rig)
    assert rig.renderer.cancel_print(rig.pid(), timeout=10) is True
    assert rig.renderer.jobs()["current"] is None
    assert rig.renderer.job_for(rig.pid())["state"] == "cancelled"  # type: ignore[index]
    assert rig.leftovers() == [] and job["id"] == 1


def test_the_thread_is_named_and_stopping_cancels_the_queue(tmp_path: Path):
    rig = Rig(tmp_path)
    rig.add_print("a.gcode", layers=1)
    rig.add_print("b.gcode", layers=1, hour=11)
    with pytest.raises(RenderRefused) as not_started:
        rig.renderer.submit(rig.pid("a.gcode"), ALL)
    assert not_started.value.status == 503
    rig.renderer.start()
    assert THREAD_NAME in [t.name for t in threading.enumerate()]
    rig.config = RenderConfig(fake_ffmpeg(rig.tmp, frames=400, delay=0.05), "500k", 1, 10, 0.0)
    first = rig.renderer.submit(rig.pid("a.gcode"), RenderTarget("position", 0))
    second = rig.renderer.submit(rig.pid("b.gcode"), RenderTarget("position", 0))
    pid = fake_pid(rig)
    rig.renderer.stop(timeout=10)
    assert THREAD_NAME not in [t.name for t in threading.enumerate()]
    assert proc_state(pid) is None and rig.leftovers() == []
    recent = {j["id"]: j["state"] for j in rig.renderer.jobs()["recent"]}
    assert recent == {first["id"]: "cancelled", second["id"]: "cancelled"}


def test_leftovers_of_a_killed_octoprint_are_removed_when_the_thread_starts(tmp_path: Path):
    rig = Rig(tmp_path)
    built = rig.add_print(layers=1)
    day = built.metadata[0].parent
    temp = day / ".video_0123456789abcdef_grid.mp4.ab12cd34.tmp"
    temp.write_bytes(b"half a video")
    (rig.work / "render-7-beef" / "v00").mkdir(parents=True)
    rig.renderer.start()
    try:
        deadline = time.monotonic() + 10
        while temp.exists() or (rig.work / "render-7-beef").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert built.images[0].exists()
    finally:
        rig.renderer.stop()


def test_after_a_print_all_its_videos_are_queued_and_a_refusal_is_only_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
):
    rig.add_print(layers=1)
    rig.config = RenderConfig(None, "500k", 1, 10, 0.0)
    with caplog.at_level("WARNING"):
        rig.renderer.submit_after_print(rig.pid())
    assert "not rendered: OctoPrint has no ffmpeg set" in caplog.text
    assert rig.renderer.jobs()["queue"] == [] and rig.renderer.jobs()["current"] is None
    rig.config = RenderConfig(FFMPEG, "500k", 1, 10, 0.0)
    rig.renderer.submit_after_print(rig.pid())
    job = rig.renderer.job_for(rig.pid())
    assert job is not None and (job["auto"], job["target"]) == (True, "all")
    assert rig.wait(job["id"], lambda j: j["state"] in ENDED)["state"] == "done"
