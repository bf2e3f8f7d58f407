"""Videos of a captured print on a real OctoPrint with its virtual printer and Debian's ffmpeg
(as OctoPrint's ``webcam.ffmpeg``): rendered after the print and through the API, checked
with ffprobe; a render asked for during a print waits for its end (no ffmpeg runs
meanwhile); a cancelled render leaves nothing; a missing ffmpeg is a clear error that
changes nothing; the files are served, zipped and deleted like the images.

One server for the module; the tests run in file order on the print the first one makes.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from capture_checks import wait_for_captured_layers
from expected_layers import expected_capture_layers, expected_layers
from harness import VIEW_ONLY, VIEWER, OctoPrintServer
from harness.camera_servers import SnapshotServer, make_jpeg
from sampling import Sampler
from small_prints import QUICK_CAPTURE
from video_checks import FFMPEG, probe, require_ffmpeg

from octoprint_layercapture.analysis.video.plan import plan_grid_layout
from octoprint_layercapture.camera_settings import camera_entry

pytestmark = pytest.mark.integration

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "prusa_tiny.gcode"
EVERY_N = QUICK_CAPTURE["capture_every_n_layers"]
BASE = "/plugin/layercapture"
SETTINGS = {**QUICK_CAPTURE, "video_render_after_print": True}  # the fake camera: 640x480
FAKE_FRAME = (640, 480)
ENDED = ("done", "failed", "cancelled")


@pytest.fixture(scope="module")
def octoprint_server_options() -> Dict[str, Any]:
    require_ffmpeg()
    return {
        "plugin_settings": SETTINGS,
        "config_overrides": {"webcam": {"ffmpeg": FFMPEG}},
        "virtual_printer": {"simulated_errors": []},
    }


class Printed:
    def __init__(self, server: OctoPrintServer, pid: str, layers: List[int]) -> None:
        self.server = server
        self.pid = pid
        self.layers = layers
        self.root = server.uploads_dir / "layercapture"

    def get(self, path: str, user: str = "admin", **kw: Any) -> Any:
        return self.server.api_as(user, "GET", BASE + path, **kw)

    def videos(self) -> Dict[str, Any]:
        response = self.get(f"/prints/{self.pid}/videos")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def video_files(self) -> Dict[str, str]:
        """This print's video and frames files, by content hash."""
        return {
            p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in self.root.rglob(f"video_{self.pid}_*")
        }

    def leftovers(self) -> List[str]:
        temps = [p.name for p in self.root.rglob("*.tmp")]
        work = self.server.basedir / "data" / "layercapture"
        return temps + [p.name for p in work.glob("render-*")]


def wait_job(
    server: OctoPrintServer,
    job_id: int,
    states: tuple,
    since: int,
    timeout: float = 120,
    frames: bool = False,
) -> Dict[str, Any]:
    """The first push of render ``job_id`` in one of ``states`` (with ``frames``: that has
    rendered a frame) since the mark ``since``."""
    message = server.wait_for_plugin_message(
        timeout,
        lambda data: (
            data.get("type") == "video"
            and data["job"]["id"] == job_id
            and data["job"]["state"] in states
            and (not frames or data["job"]["frames_done"] > 0)
        ),
        since=since,
    )
    return dict(message.payload["job"])


def ffmpeg_children(server: OctoPrintServer) -> List[int]:
    """Processes named ffmpeg whose parent is the OctoPrint server."""
    assert server.process is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if name == "ffmpeg" and parent == server.process.pid:
            found.append(int(entry.name))
    return found


class FfmpegSampler(Sampler):
    """Samples every ffmpeg child of OctoPrint every few milliseconds on a named thread:
    its state letter (R, S, T...) and the CPU time it has used (clock ticks)."""

    def __init__(self, server: OctoPrintServer) -> None:
        super().__init__("test-ffmpeg-sampler", 0.003)  # the process table: nothing to wait on
        self.server = server
        self.samples: List[Tuple[float, int, str, int]] = []  # (monotonic, pid, state, ticks)

    def sample(self) -> None:
        now = time.monotonic()
        for pid in ffmpeg_children(self.server):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            self.samples.append((now, pid, fields[0], int(fields[11]) + int(fields[12])))

    def cpu_between(self, start: float, end: float) -> Optional[int]:
        """Ticks ffmpeg used between the first and the last sample in [start, end] (one
        process; None: fewer than two samples there)."""
        inside = [(pid, ticks) for at, pid, _state, ticks in self.samples if start <= at <= end]
        if len(inside) < 2 or inside[0][0] != inside[-1][0]:
            return None
        return inside[-1][1] - inside[0][1]


@pytest.fixture(scope="module")
def printed(octoprint_server: OctoPrintServer) -> Iterator[Printed]:
    """prusa_tiny printed with captures; its videos rendered after the print by itself."""
    server = octoprint_server
    layers = expected_capture_layers(expected_layers(TINY), EVERY_N)
    mark = server.mark()
    server.start_print(TINY)
    wait_for_captured_layers(server, len(layers), since=mark, timeout=90)
    server.wait_print_done(timeout=90, since=mark)
    queued = server.wait_for_plugin_message(
        60, lambda d: d.get("type") == "video" and d["job"]["auto"], since=mark
    )
    job = queued.payload["job"]
    assert job["auto"] is True and job["target"] == "all"
    done = wait_job(server, job["id"], ENDED, mark)
    assert done["state"] == "done", done
    yield Printed(server, job["print_id"], layers)


def test_after_the_print_every_video_is_rendered_and_ffprobe_agrees(printed: Printed) -> None:
    answer = printed.videos()
    assert answer["ffmpeg_error"] is None and answer["render"]["state"] == "done"
    assert (answer["grid_size"], answer["positions"]) == (3, list(range(9)))
    videos = answer["videos"]
    assert [(v["kind"], v["index"]) for v in videos] == [("grid", None)] + [
        ("position", i) for i in range(9)
    ]
    layout = plan_grid_layout(3, FAKE_FRAME)
    for video in videos:
        info = probe(printed.root / video["path"])
        assert (info["codec_name"], info["pix_fmt"]) == ("h264", "yuv420p")
        assert info["nb_read_frames"] == len(printed.layers) == video["frame_count"]
        size = (layout.width, layout.height) if video["kind"] == "grid" else FAKE_FRAME
        assert (info["width"], info["height"]) == size, video["path"]
        frames = json.loads((printed.root / video["metadata"]).read_text())
        assert [f["layer"] for f in frames["frames"]] == printed.layers
        images = (
            [f["image"] for f in frames["frames"]]
            if video["kind"] == "position"
            else [t["image"] for f in frames["frames"] for t in f["tiles"]]
        )
        assert all(image and (printed.root / image).is_file() for image in images)
    # progress was pushed as frames done / total
    pushes = [
        m.payload["job"]
        for m in printed.server.events.plugin_messages("layercapture")
        if m.payload.get("type") == "video" and m.payload["job"]["print_id"] == printed.pid
    ]
    total = 10 * len(printed.layers)
    assert pushes[-1]["frames_done"] == pushes[-1]["frames_total"] == total
    assert {p["state"] for p in pushes} >= {"queued", "preparing", "rendering", "done"}
    assert printed.leftovers() == []


def test_one_position_with_a_held_last_frame_through_the_api(printed: Printed) -> None:
    server = printed.server
    before = printed.video_files()
    assert (
        server.save_plugin_settings({"video_fps": 10, "video_hold_seconds": 0.5}).status_code == 200
    )
    try:
        mark = server.mark()
        response = server.api(
            "POST", f"{BASE}/prints/{printed.pid}/videos", json={"target": "position", "index": 4}
        )
        assert response.status_code == 202, response.text
        job = response.json()["job"]
        assert (job["target"], job["index"], job["state"]) == ("position", 4, "queued")
        done = wait_job(server, job["id"], ENDED, mark)
        assert done["state"] == "done", done
    finally:
        server.save_plugin_settings({"video_fps": 25, "video_hold_seconds": 0.0})
    four = next(v for v in printed.videos()["videos"] if v["index"] == 4)
    info = probe(printed.root / four["path"])
    assert info["nb_read_frames"] == len(printed.layers) + 5 == four["frame_count"]
    assert four["fps"] == 10 and four["hold_frames"] == 5
    after = printed.video_files()
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {four["path"], four["metadata"]}  # the others were not touched


def test_videos_are_served_like_the_images_zipped_and_listed_with_the_print(
    printed: Printed,
) -> None:
    server = printed.server
    server.add_web_users()
    grid = printed.videos()["videos"][0]
    url = f"/files/{grid['path']}"
    whole = printed.get(url)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert whole.content == (printed.root / grid["path"]).read_bytes()
    part = printed.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100  # seeking in the browser
    assert printed.get(url, user=VIEW_ONLY).status_code == 200
    assert printed.get(url, user=VIEWER).status_code == 403
    assert printed.get(f"/prints/{printed.pid}/videos", user=VIEWER).status_code == 403
    assert printed.server.api_as(None, "GET", BASE + url).status_code in (401, 403)
    listing = printed.get("/prints").json()["prints"]
    assert next(p for p in listing if p["id"] == printed.pid)["video_count"] == 10
    archive = zipfile.ZipFile(io.BytesIO(printed.get(f"/download/{printed.pid}.zip").content))
    names = {n.split("/", 1)[1] for n in archive.namelist()}
    for video in printed.videos()["videos"]:
        assert video["path"] in names and video["metadata"] in names
    # the dataset export leaves the videos out, and still has a row per image
    export = printed.get(f"/export/{printed.pid}.zip")
    assert export.status_code == 200, export.text
    dataset = zipfile.ZipFile(io.BytesIO(export.content))
    assert not [n for n in dataset.namelist() if n.endswith((".mp4", "_grid.json"))]
    rows = next(n for n in dataset.namelist() if n.endswith("metadata.jsonl"))
    assert len(dataset.read(rows).decode().splitlines()) == 9 * len(printed.layers)


def test_a_render_asked_for_during_a_print_waits_until_it_has_ended(printed: Printed) -> None:
    """... and a cancelled print with captured layers gets its videos after it too."""
    server = printed.server
    mark = server.mark()
    server.start_print(TINY, name="second.gcode")
    wait_for_captured_layers(server, 1, since=mark, timeout=60)
    response = server.api("POST", f"{BASE}/prints/{printed.pid}/videos", json={"target": "grid"})
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    waiting = wait_job(server, job["id"], ("waiting",), mark, timeout=10)
    assert waiting["reason"].startswith("a print is running")
    seen_ffmpeg = []
    for _ in range(10):  # a second of the print
        seen_ffmpeg += ffmpeg_children(server)
        assert server.get_json(f"{BASE}/videos/jobs")["current"]["state"] == "waiting"
        time.sleep(0.1)  # sampling the process table: nothing to wait on
    assert server.api("POST", "/api/job", json={"command": "cancel"}).status_code == 204
    server.wait_for_event("PrintCancelled", timeout=60, since=mark)
    assert seen_ffmpeg == []  # none while the print ran
    done = wait_job(server, job["id"], ENDED, mark)
    assert done["state"] == "done", done
    # the cancelled print's own videos follow, after this one
    second = server.wait_for_plugin_message(
        120,
        lambda d: (
            d.get("type") == "video"
            and d["job"]["gcode_file"] == "second.gcode"
            and d["job"]["state"] in ENDED
        ),
        since=mark,
    ).payload["job"]
    assert second["state"] == "done" and second["auto"] is True, second
    assert second["started_at"] >= done["finished_at"]


def test_renders_allowed_during_prints_stop_whenever_the_head_is_away(printed: Printed) -> None:
    server = printed.server
    # the print's own videos are not rendered after it: this test cancels its render
    settings = {
        "video_render_while_printing": True,
        "video_hold_seconds": 60.0,
        "video_render_after_print": False,
    }
    assert server.save_plugin_settings(settings).status_code == 200
    try:
        mark = server.mark()
        response = server.api("POST", f"{BASE}/prints/{printed.pid}/videos", json={})
        assert response.status_code == 202, response.text
        job = response.json()["job"]
        wait_job(server, job["id"], ("rendering",), mark, timeout=60, frames=True)
        started = time.monotonic()
        with FfmpegSampler(server) as sampler:
            server.start_print(TINY, name="third.gcode")
            wait_for_captured_layers(server, len(printed.layers), since=mark, timeout=90)
            server.wait_print_done(timeout=90, since=mark)
        paused = [
            m.payload["job"]
            for m in server.events.plugin_messages("layercapture", since=mark)
            if m.payload.get("type") == "video" and m.payload["job"]["state"] == "paused"
        ]
        assert server.api("DELETE", f"{BASE}/videos/jobs/{job['id']}").status_code == 200
        wait_job(server, job["id"], ENDED, mark, timeout=30)
    finally:
        server.save_plugin_settings(
            {
                "video_render_while_printing": False,
                "video_hold_seconds": 0.0,
                "video_render_after_print": True,
            }
        )
    # ffmpeg used no CPU from the lift to the way down of any capture sequence (the
    # plugin's moves are G0; the held line of the job that follows is the job's own G1)
    moves = [
        r["t"]
        for r in server.sent_lines(since=started)
        if "plugin:layercapture" in r["tags"] and r["gcode"] == "G0"
    ]
    sequences: List[List[float]] = []
    for t in moves:
        if sequences and t - sequences[-1][-1] < 0.5:
            sequences[-1].append(t)
        else:
            sequences.append([t])
    assert [len(s) for s in sequences] == [12] * len(printed.layers)  # lift, 9, 2 back
    used = [sampler.cpu_between(s[0], s[-1]) for s in sequences]

    assert [ticks for ticks in used if ticks] == [], used  # 0 ticks, or not sampled
    assert sum(1 for ticks in used if ticks is not None) >= 2, used  # the sampler kept up
    # ... and it did render between the captures: the print did not hold it back
    assert any(state in "RS" for _t, _pid, state, _ticks in sampler.samples)
    assert {p["reason"] for p in paused} == {"a capture sequence is running"}


def test_cancel_mid_render_leaves_nothing_behind(printed: Printed) -> None:
    server = printed.server
    before = printed.video_files()
    # a minute of held frames per video: long enough to be cancelled half way
    assert server.save_plugin_settings({"video_hold_seconds": 60.0}).status_code == 200
    try:
        mark = server.mark()
        response = server.api("POST", f"{BASE}/prints/{printed.pid}/videos", json={"target": "all"})
        assert response.status_code == 202, response.text
        job = response.json()["job"]
        running = wait_job(server, job["id"], ("rendering",), mark, timeout=60, frames=True)
        assert running["frames_done"] < running["frames_total"]
        assert ffmpeg_children(server), "ffmpeg is rendering"
        cancel = server.api("DELETE", f"{BASE}/videos/jobs/{job['id']}")
        assert cancel.status_code == 200, cancel.text
        ended = wait_job(server, job["id"], ENDED, mark, timeout=30)
    finally:
        server.save_plugin_settings({"video_hold_seconds": 0.0})
    assert ended["state"] == "cancelled" and ended["error"] is None
    assert ffmpeg_children(server) == []
    assert printed.leftovers() == []
    assert printed.video_files() == before
    assert server.api("DELETE", f"{BASE}/videos/jobs/{job['id']}").status_code == 404


def test_a_missing_ffmpeg_is_a_clear_error_and_nothing_else_changes(printed: Printed) -> None:
    server = printed.server
    before = printed.video_files()
    jobs_before = server.get_json(f"{BASE}/videos/jobs")
    try:
        for path, words in (
            ("/nonexistent/ffmpeg", "ffmpeg not found at '/nonexistent/ffmpeg'"),
            ("", "OctoPrint has no ffmpeg set"),
        ):
            response = server.api("POST", "/api/settings", json={"webcam": {"ffmpegPath": path}})
            assert response.status_code == 200, response.text
            refused = server.api(
                "POST", f"{BASE}/prints/{printed.pid}/videos", json={"target": "all"}
            )
            assert refused.status_code == 409
            assert words in refused.json()["error"] and "Path to FFMPEG" in refused.json()["error"]
            assert printed.videos()["ffmpeg_error"] == refused.json()["error"]
    finally:
        server.api("POST", "/api/settings", json={"webcam": {"ffmpegPath": FFMPEG}})
    assert server.get_json(f"{BASE}/videos/jobs") == jobs_before
    assert printed.video_files() == before and printed.leftovers() == []
    assert printed.videos()["ffmpeg_error"] is None


def test_bad_render_requests_are_refused_and_queue_nothing(printed: Printed) -> None:
    server = printed.server
    jobs_before = server.get_json(f"{BASE}/videos/jobs")
    url = f"{BASE}/prints/{printed.pid}/videos"
    for body, status in (
        ({"target": "film"}, 400),
        ({"target": "position", "index": 9}, 400),
        ({"target": "position", "index": "4"}, 400),
        ({"target": "grid", "index": 1}, 400),
        ({"fps": 60}, 400),
        ([], 400),
    ):
        response = server.api("POST", url, json=body)
        assert response.status_code == status and "error" in response.json(), (body, response.text)
    assert (
        server.api("POST", url, data="{", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert server.api("POST", f"{BASE}/prints/{'0' * 16}/videos", json={}).status_code == 404
    assert server.api("POST", f"{BASE}/prints/..%2f/videos", json={}).status_code == 404
    assert server.api_as(VIEW_ONLY, "POST", url, json={}).status_code == 403
    assert server.api_as(VIEWER, "GET", f"{BASE}/videos/jobs").status_code == 403
    assert server.api("DELETE", f"{BASE}/videos/jobs/abc").status_code == 404
    assert server.api("DELETE", f"{BASE}/videos/jobs/999").status_code == 404
    assert server.get_json(f"{BASE}/videos/jobs") == jobs_before


def test_deleting_the_print_deletes_its_videos(printed: Printed) -> None:
    files = [printed.root / name for name in printed.video_files()]
    assert files
    response = printed.server.api("DELETE", f"{BASE}/prints/{printed.pid}")
    assert response.status_code == 200, response.text
    assert not any(path.exists() for path in files)
    assert printed.get(f"/prints/{printed.pid}/videos").status_code == 404
    assert list(printed.root.rglob("video_*_grid.mp4")), "the second print's videos stay"


def test_two_cameras_one_video_per_camera_and_position_and_a_grid_video_each(
    octoprint_server: OctoPrintServer,
) -> None:
    """The drawn camera first (today's video names) and a snapshot camera ``nozzle`` of
    320x240 (its names carry ``_cam_nozzle``): after the print each camera has a video per
    position and a grid video of its own images, one frame per captured layer."""
    server = octoprint_server
    nozzle_frame = (320, 240)
    layers = expected_capture_layers(expected_layers(TINY), EVERY_N)
    with SnapshotServer(make_jpeg(nozzle_frame, seed=2)) as nozzle:
        cameras = [
            camera_entry(type="fake"),
            camera_entry(name="nozzle", type="snapshot", url=nozzle.url("jpeg")),
        ]
        assert server.save_plugin_settings({"cameras": cameras}).status_code == 200
        try:
            mark = server.mark()
            server.start_print(TINY)
            wait_for_captured_layers(server, len(layers), since=mark, timeout=90)
            server.wait_print_done(timeout=90, since=mark)
            queued = server.wait_for_plugin_message(
                60, lambda d: d.get("type") == "video" and d["job"]["auto"], since=mark
            )
            job = queued.payload["job"]
            done = wait_job(server, job["id"], ENDED, mark, timeout=180)
            assert done["state"] == "done", done
        finally:
            server.save_plugin_settings({"cameras": QUICK_CAPTURE["cameras"]})
    printed = Printed(server, job["print_id"], layers)
    answer = printed.videos()
    assert answer["cameras"] == ["main", "nozzle"]
    videos = answer["videos"]
    expected = [(camera, "grid", None) for camera in ("main",)]
    expected += [("main", "position", i) for i in range(9)]
    expected += [("nozzle", "grid", None)] + [("nozzle", "position", i) for i in range(9)]
    assert [(v["camera"], v["kind"], v["index"]) for v in videos] == expected
    pid = printed.pid
    for video in videos:
        name = video["path"].split("/", 1)[1]
        part = "grid" if video["index"] is None else f"pos_{video['index']:02d}"
        own = "" if video["camera"] == "main" else "_cam_nozzle"
        assert name == f"video_{pid}_{part}{own}.mp4"
        info = probe(printed.root / video["path"])
        assert (info["codec_name"], info["pix_fmt"]) == ("h264", "yuv420p")
        assert info["nb_read_frames"] == len(layers) == video["frame_count"], name
        frame = FAKE_FRAME if video["camera"] == "main" else nozzle_frame
        layout = plan_grid_layout(3, frame)
        size = (layout.width, layout.height) if video["kind"] == "grid" else frame
        assert (info["width"], info["height"]) == size, name
        frames = json.loads((printed.root / video["metadata"]).read_text())
        assert frames["camera"] == video["camera"]
        images = (
            [f["image"] for f in frames["frames"]]
            if video["kind"] == "position"
            else [t["image"] for f in frames["frames"] for t in f["tiles"]]
        )
        assert len(images) == len(layers) * (1 if video["kind"] == "position" else 9)
        for image in images:
            assert ("_cam_nozzle_" in image) == (video["camera"] == "nozzle"), image
            assert (printed.root / image).is_file()
        if video["camera"] == "nozzle" and video["kind"] == "position":
            # each frame is the nozzle camera's own picture, as stored unchanged
            assert all((printed.root / i).read_bytes() == nozzle.jpeg for i in images)
    # the zip of one camera has only that camera's videos
    archive = zipfile.ZipFile(
        io.BytesIO(printed.get(f"/download/{pid}.zip", params={"camera": "nozzle"}).content)
    )
    zipped = [n.split("/", 1)[1] for n in archive.namelist() if n.endswith(".mp4")]
    assert sorted(zipped) == sorted(v["path"] for v in videos if v["camera"] == "nozzle")
    assert server.api("DELETE", f"{BASE}/prints/{pid}").status_code == 200
