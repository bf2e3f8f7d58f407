"""Every camera at one position at once (capture/shots.py), with real threads and time."""

from __future__ import annotations

import threading
import time
from typing import List, Optional

import pytest
from fakes import TINY_JPEG

from octoprint_layercapture.cameras.base import Transform
from octoprint_layercapture.capture.ports import CameraError, ShotRequest, Snapshot
from octoprint_layercapture.capture.shots import (
    THREAD_PREFIX,
    CameraRig,
    CameraTurns,
    RigCamera,
)

REQUEST = ShotRequest(layer=3, layer_z=0.6, index=4, count=9, x=125.0, y=105.0, z=5.6)


class SlowCamera:
    """Answers after ``seconds`` (real time); records who asked, on which thread."""

    transform = Transform()

    def __init__(
        self,
        name: str,
        seconds: float = 0.0,
        error: Optional[Exception] = None,
        block: Optional[threading.Event] = None,
    ) -> None:
        self.name = name
        self.seconds = seconds
        self.error = error
        self.block = block
        self.requests: List[ShotRequest] = []
        self.threads: List[str] = []
        self.started: List[float] = []
        self.closed = False

    def take(self, request: ShotRequest) -> Snapshot:
        self.started.append(time.monotonic())
        self.requests.append(request)
        self.threads.append(threading.current_thread().name)
        if self.block is not None:
            self.block.wait(10)
        time.sleep(self.seconds)
        if self.error is not None:
            raise self.error
        return Snapshot(TINY_JPEG, "image/jpeg", self.seconds, self.name)

    def close(self) -> None:
        self.closed = True


def rig_of(*cameras: SlowCamera, wait_limit: float = 5.0) -> CameraRig:
    return CameraRig(
        [RigCamera(c.name, c, name_in_files=n > 0) for n, c in enumerate(cameras)], wait_limit
    )


def test_cameras_are_taken_at_once_so_a_position_costs_the_slowest():
    cameras = [SlowCamera(name, 0.3) for name in ("main", "top", "side")]
    rig = rig_of(*cameras)
    try:
        started = time.monotonic()
        shots = rig.take(REQUEST, rig.cameras)
        elapsed = time.monotonic() - started
    finally:
        rig.close()
    assert [s.camera.name for s in shots] == ["main", "top", "side"]
    assert all(s.snapshot is not None and s.error is None for s in shots)
    assert elapsed < 0.55, f"three 0.3 s cameras in {elapsed:.2f} s: not in parallel"
    assert max(c.started[0] for c in cameras) - min(c.started[0] for c in cameras) < 0.1
    # the first on the caller's thread, each other on a named thread of its own
    assert cameras[0].threads == [threading.current_thread().name]
    assert cameras[1].threads[0].startswith(f"{THREAD_PREFIX}-top")
    assert cameras[2].threads[0].startswith(f"{THREAD_PREFIX}-side")
    assert all(c.closed for c in cameras), "closing the rig closes every camera"


def test_each_camera_gets_its_own_request():
    cameras = [SlowCamera("main"), SlowCamera("nozzle")]
    rig = rig_of(*cameras)
    try:
        shots = rig.take(REQUEST, rig.cameras)
    finally:
        rig.close()
    assert cameras[0].requests == [
        ShotRequest(3, 0.6, 4, 9, 125.0, 105.0, 5.6, camera="main", name_in_files=False)
    ]
    assert cameras[1].requests == [
        ShotRequest(3, 0.6, 4, 9, 125.0, 105.0, 5.6, camera="nozzle", name_in_files=True)
    ]
    assert [s.request for s in shots] == [cameras[0].requests[0], cameras[1].requests[0]]


def test_one_camera_runs_on_the_callers_thread_only():
    camera = SlowCamera("main")
    rig = CameraRig.single(camera)
    rig.take(REQUEST, rig.cameras)
    rig.close()
    assert camera.threads == [threading.current_thread().name]
    assert not [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def test_failures_are_each_cameras_own_and_never_raised():
    cameras = [
        SlowCamera("main", error=CameraError("snapshot URL http://a: timed out after 2 s")),
        SlowCamera("top"),
        SlowCamera("side", error=RuntimeError("driver exploded")),
    ]
    rig = rig_of(*cameras)
    try:
        main, top, side = rig.take(REQUEST, rig.cameras)
    finally:
        rig.close()
    assert main.snapshot is None and main.error == "snapshot URL http://a: timed out after 2 s"
    assert top.snapshot is not None and top.error is None
    assert side.snapshot is None and side.error == "camera error RuntimeError('driver exploded')"


def test_a_camera_that_never_answers_is_given_up_and_then_not_asked_again():
    """A worker stuck beyond its limit costs the position the rig's wait limit, once: at
    the next position that camera fails at once and the others are taken as usual."""
    stuck = threading.Event()
    cameras = [SlowCamera("main"), SlowCamera("top", block=stuck)]
    rig = rig_of(*cameras, wait_limit=0.3)
    try:
        started = time.monotonic()
        main, top = rig.take(REQUEST, rig.cameras)
        assert 0.25 < time.monotonic() - started < 1.0
        assert main.snapshot is not None
        assert top.snapshot is None and top.error == "top: no answer within 0.3 s"
        started = time.monotonic()
        main, top = rig.take(ShotRequest(3, 0.6, 5, 9, 145.0, 105.0, 5.6), rig.cameras)
        assert time.monotonic() - started < 0.2
        assert main.snapshot is not None
        assert top.error == "top: still busy with position 5, not asked again"
        assert len(cameras[1].requests) == 1
    finally:
        stuck.set()
        rig.close()


def test_a_subset_of_cameras_is_taken_in_its_order():
    cameras = [SlowCamera("main"), SlowCamera("top"), SlowCamera("side")]
    rig = rig_of(*cameras)
    try:
        shots = rig.take(REQUEST, [rig.cameras[2], rig.cameras[1]])
    finally:
        rig.close()
    assert [s.camera.name for s in shots] == ["side", "top"]
    assert cameras[0].requests == []
    assert cameras[2].threads == [threading.current_thread().name]


def test_a_rig_needs_a_camera():
    with pytest.raises(ValueError):
        CameraRig([])


# ---- the rule for cameras that keep failing


def turns_of(*names: str) -> CameraTurns:
    return CameraTurns(rig_of(*(SlowCamera(name) for name in names)))


def test_one_camera_failing_twice_in_a_row_skips_the_rest_of_the_layer():
    turns = turns_of("main")
    assert turns.after(["main"], 7) == ([], False)
    assert turns.after([], 6) == ([], False), "a picture in between resets the count"
    assert turns.after(["main"], 5) == ([], False)
    dropped, skip = turns.after(["main"], 4)
    assert skip and dropped == [
        ("main", "2 camera failures in a row: the remaining 4 positions of this layer are skipped")
    ]


def test_a_dead_camera_is_dropped_and_the_others_go_on():
    """The second camera failing twice skips no position of the first."""
    turns = turns_of("main", "nozzle")
    assert turns.after(["nozzle"], 8) == ([], False)
    dropped, skip = turns.after(["nozzle"], 7)
    assert not skip
    assert dropped == [
        (
            "nozzle",
            "camera 'nozzle': 2 failures in a row: its remaining 7 positions of this layer are "
            "skipped; the other cameras go on",
        )
    ]
    assert [c.name for c in turns.active] == ["main"]
    assert turns.after(["main"], 6) == ([], False)
    dropped, skip = turns.after(["main"], 5)
    assert skip and dropped[0][0] == "main"
    assert "no camera is left, so the layer's remaining positions are skipped" in dropped[0][1]


def test_nothing_is_dropped_after_the_last_position():
    turns = turns_of("main", "nozzle")
    turns.after(["main", "nozzle"], 1)
    assert turns.after(["main", "nozzle"], 0) == ([], False)
    assert len(turns.active) == 2


def test_failures_are_named_with_the_camera_only_when_there_are_several():
    assert turns_of("main").where("position 5 of 9", RigCamera("main", SlowCamera("main"))) == (
        "position 5 of 9"
    )
    several = turns_of("main", "top")
    assert several.where("position 5 of 9", several.active[1]) == "position 5 of 9 (top)"
