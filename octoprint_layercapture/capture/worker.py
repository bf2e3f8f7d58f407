"""Runs capture sequences off OctoPrint's threads.

The comm-thread hook only stops the job and queues a :class:`CaptureRequest`; the named
worker thread here plans the grid and runs the sequence. Images go to the image writer's
thread as they are taken, so the head moves on at once; the writer waits while the
sequence runs and writes them once the job goes on. Each layer's metadata is written on
that thread after its images and records what could not be saved.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..analysis.records import LayerContext, StopObservation, complete_metadata, observe_stop
from ..cameras.sources import NoCamera
from ..settings import Bounds, CaptureSettings
from ..store.files import CaptureStore
from ..store.records import FailureRecord, ImageRecord, LayerMetadata, SkippedRecord
from ..store.writer import ImageWriter, StoreSink
from ..vocabulary import State
from .armed import ArmedPrint, PrintInfo
from .grid import GridPlan, plan_grid
from .layers import LayerTrigger, MotionState
from .ports import Position, PrinterPort
from .results import CaptureTask, SequenceResult
from .sequence import CaptureSequence
from .shots import WAIT_GRACE_S, CameraRig, RigCamera

_THREAD_NAME = "layercapture-worker"


@dataclass(frozen=True)
class CaptureRequest:
    """One layer to capture, for the print ``armed``."""

    trigger: LayerTrigger
    motion: MotionState
    held_line: Optional[str]
    armed: ArmedPrint
    # the printer port of the print that asked (the plugin may have moved on to another
    # print, or none, by the time the sequence runs or ends), and who asked
    printer: Optional[PrinterPort] = None
    owner: Optional[object] = None
    # what the comm thread knew at the stop, for the metadata's version 2 records
    context: Optional[LayerContext] = None

    @property
    def settings(self) -> CaptureSettings:
        return self.armed.settings

    @property
    def bounds(self) -> Optional[Bounds]:
        return self.armed.bounds

    @property
    def print_info(self) -> PrintInfo:
        return self.armed.print_info

    @property
    def store_root(self) -> Path:
        return self.armed.store_root


class InterruptibleClock:
    """Wall clock for the sequence; its sleeps (settle delays only) end early on shutdown."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


def position_record(position: Position) -> Dict[str, Optional[float]]:
    """A reported position as the metadata stores it."""
    return {"x": position.x, "y": position.y, "z": position.z, "e": position.e}


def build_metadata(
    request: CaptureRequest,
    plan: GridPlan,
    result: SequenceResult,
    plugin_version: str,
    cameras: Sequence[RigCamera] = (),
) -> LayerMetadata:
    s = request.settings
    plan_rows = {p.index: p for p in plan.points}
    first = cameras[0].name if cameras else None
    images = []
    for shot in result.shots:
        if shot.saved is None:
            continue
        point = plan_rows[shot.index]
        images.append(
            ImageRecord(
                path=shot.saved.path,
                thumbnail=shot.saved.thumbnail,
                index=shot.index,
                row=point.row,
                col=point.col,
                position={"x": point.x, "y": point.y, "z": point.z},
                measured=None if shot.measured is None else position_record(shot.measured),
                captured_at=shot.captured_at.isoformat(timespec="milliseconds"),
                duration_s=round(shot.duration, 4),
                camera=shot.snapshot_camera,
                size_bytes=shot.saved.size_bytes,
                content_type="image/jpeg",
                camera_name=shot.camera,
            )
        )
    firsts = [image for image in images if first is None or image.camera_name == first]
    return LayerMetadata(
        layer=request.trigger.layer,
        z_height=request.trigger.z,
        timestamp=result.started_at.isoformat(timespec="seconds"),
        gcode_file=request.print_info.gcode_file,
        print_start_time=request.print_info.started_at.isoformat(timespec="seconds"),
        images=images,
        settings={
            "grid_spacing": s.grid_spacing,
            "grid_center": {"x": s.grid_center_x, "y": s.grid_center_y},
            "grid_size": s.grid_size,
            "z_offset": s.z_offset,
            "stop_mode": s.stop_mode,
            "camera_mounting": s.camera_mounting.to_dict(),
        },
        capture_z=plan.capture_z,
        stop_position=(
            None
            if result.stop_position is None
            else {**position_record(result.stop_position), "source": result.stop_position_source}
        ),
        return_position=(
            None if result.return_position is None else position_record(result.return_position)
        ),
        travel_z=result.travel_z,
        camera=firsts[0].camera if firsts else "",
        cameras=[
            {"name": camera.name, "mounting": camera.mounting, "camera_info": None}
            for camera in cameras
        ],
        skipped=[
            SkippedRecord(index=p.index, position={"x": p.x, "y": p.y, "z": p.z}, reason=p.reason)
            for p in plan.skipped
        ],
        failures=[
            FailureRecord(
                index=f.index,
                phase=f.phase,
                message=f.message,
                duration_s=round(f.duration, 4),
                camera=f.camera,
            )
            for f in result.failures
        ],
        timings={k: round(v, 4) for k, v in result.timings.items()},
        trigger={"source": request.trigger.source, "reasons": list(request.trigger.reasons)},
        plugin_version=plugin_version,
        # the mosaic thread stitches a toolhead camera's layer once it is written
        mosaic={"status": "pending"} if s.camera_mounting.on_toolhead else None,
    )


# How long a layer's metadata waits for its image files (a stalled disk must not keep the
# metadata from ever being written).
WRITE_WAIT = 60.0


class CaptureWorker:
    """One named thread that runs the queued captures one after another; an
    :class:`ImageWriter` thread writes their files.

    ``on_layer_saved(path)`` gets each metadata file once it is written (the gallery index
    adds the layer), before the ``captured`` status is reported. ``on_busy()`` is called
    when a sequence is submitted (on the comm thread, before the head moves: keep it cheap)
    and ``on_idle()`` once its sequence has handed the job back (the video renderer stops
    and continues ffmpeg with them).
    """

    def __init__(
        self,
        make_printer: Callable[[], PrinterPort],
        make_cameras: Callable[[CaptureRequest, GridPlan], List[RigCamera]],
        on_status: Callable[[Dict[str, Any]], None],
        on_finished: Callable[[CaptureRequest, SequenceResult], None],
        plugin_version: str,
        logger: Optional[logging.Logger] = None,
        clock: Any = None,
        on_layer_saved: Optional[Callable[[Path], object]] = None,
        writer: Optional[ImageWriter] = None,
        on_busy: Optional[Callable[[], None]] = None,
        on_idle: Optional[Callable[[], None]] = None,
    ) -> None:
        self._make_printer = make_printer
        self._on_layer_saved = on_layer_saved
        self._make_cameras = make_cameras
        self._on_status = on_status
        self._on_finished = on_finished
        self._plugin_version = plugin_version
        self._logger = logger or logging.getLogger("octoprint.plugins.layercapture.worker")
        self._clock = clock
        self._queue: queue.Queue[Optional[CaptureRequest]] = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._busy = threading.Event()
        self._stopping = threading.Event()
        self._writer = writer or ImageWriter(self._logger)
        self._on_busy = on_busy
        self._on_idle = on_idle

    @property
    def busy(self) -> bool:
        """A sequence is queued or moving the head (writing its metadata does not count)."""
        return self._busy.is_set()

    def start(self) -> None:
        self._writer.start()
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the thread after the current capture (which the caller has interrupted),
        then the writer after the files and metadata still queued."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._logger.warning(f"{_THREAD_NAME} did not stop within {timeout:g} s")
        self._writer.stop(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Whether no sequence is queued or has the head away (waits up to ``timeout``):
        where the analysis threads may use the processor."""
        deadline = time.monotonic() + timeout
        while self._busy.is_set() or self._writer.head_away:
            if time.monotonic() >= deadline or self._stopping.is_set():
                return False
            self._stopping.wait(0.05)
        return True

    def submit(self, request: CaptureRequest) -> None:
        self._busy.set()
        if self._on_busy is not None:
            self._on_busy()
        self._queue.put(request)

    def after_writes(self, job: Callable[[], None]) -> None:
        """Runs ``job`` on the writer's thread once the files and metadata queued so far
        are written (the gallery has indexed them)."""
        self._writer.submit(job)

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            try:
                self._capture(request)
            except Exception:
                self._logger.exception(
                    f"layer {request.trigger.layer}: capture failed unexpectedly"
                )
                self._on_status({"state": State.ERROR, "layer": request.trigger.layer})
            finally:
                self._idle()

    def _idle(self) -> None:
        self._busy.clear()
        if self._on_idle is not None:
            self._on_idle()

    def _plan(self, request: CaptureRequest) -> GridPlan:
        s = request.settings
        motion = request.motion
        start_xy = None if motion.x is None or motion.y is None else (motion.x, motion.y)
        return plan_grid(
            s.grid_center_x,
            s.grid_center_y,
            s.grid_spacing,
            s.grid_size,
            request.trigger.z,
            s.z_offset,
            request.bounds,
            start_xy=start_xy,
            printed_top=request.trigger.printed_top,
        )

    def _capture(self, request: CaptureRequest) -> None:
        s = request.settings
        layer = request.trigger.layer
        setup_error: Optional[str] = None
        try:
            plan = self._plan(request)
            cameras = self._make_cameras(request, plan)
        except Exception as exc:
            # the job is already stopped: an empty plan makes the sequence continue it
            # without moving the head, and the metadata records why
            self._logger.exception(f"layer {layer}: could not prepare the capture")
            plan = GridPlan(
                (),
                (),
                request.trigger.z,
                s.grid_size,
                s.grid_spacing,
                s.grid_center_x,
                s.grid_center_y,
                request.trigger.z,
                s.z_offset,
            )
            setup_error = f"could not prepare the capture: {exc}"
            cameras = [RigCamera(s.cameras[0].name, NoCamera(setup_error))]
        for skipped in plan.skipped:
            self._logger.warning(f"layer {layer} position {skipped.index}: {skipped.reason}")
        store = CaptureStore(request.store_root)
        transforms = {c.name: c.port.transform.for_storage(s.image_quality) for c in cameras}
        sink = StoreSink(store, s, self._writer, transforms)
        clock = self._clock or InterruptibleClock(self._stopping)
        # the cameras' own limit, then a grace: a worker that never returns is given up
        wait_limit = (s.snapshot_retries + 1) * s.snapshot_timeout + WAIT_GRACE_S
        rig = CameraRig(cameras, wait_limit, clock.monotonic, self._logger)
        sequence = CaptureSequence(
            printer=request.printer or self._make_printer(),
            cameras=rig,
            sink=sink,
            clock=clock,
            logger=self._logger,
            on_progress=lambda phase, i, n: self._on_status(
                {"state": State.CAPTURING, "layer": layer, "phase": phase, "index": i, "count": n}
            ),
        )
        observed = observe_stop(request.context, cameras)
        task = CaptureTask(
            layer=layer,
            layer_z=request.trigger.z,
            plan=plan,
            motion=request.motion,
            settings=s,
            held_line=request.held_line,
            printed_top=request.trigger.printed_top,
            max_z=None if request.bounds is None else request.bounds.max_z,
            lines_checked=request.armed.lines_checked,
        )
        try:
            with self._writer.held():
                result = sequence.run(task)
        finally:
            # the job runs again from here on; the next layer may queue its capture
            self._idle()
            rig.close()
        self._on_finished(request, result)
        # queued behind this layer's images: runs once they are written
        self._writer.submit(
            lambda: self._finish_layer(
                request, plan, result, sink, store, setup_error, cameras, observed
            )
        )

    def _finish_layer(
        self,
        request: CaptureRequest,
        plan: GridPlan,
        result: SequenceResult,
        sink: StoreSink,
        store: CaptureStore,
        setup_error: Optional[str],
        cameras: Sequence[RigCamera] = (),
        observed: Optional[StopObservation] = None,
    ) -> None:
        layer = request.trigger.layer
        sink.settle(result, WRITE_WAIT)
        for failure in result.failures:
            if failure.phase == "write":
                self._logger.warning(f"layer {layer}: {failure.message}")
        metadata = build_metadata(request, plan, result, self._plugin_version, cameras)
        if setup_error is not None:
            metadata.failures.append(FailureRecord(None, "prepare", setup_error, 0.0))
        # the hashes, the layer's lines and its toolpath: disk work, here off the printer's path
        try:
            complete_metadata(
                metadata, request.context, observed, sink.written(), store, result.started_at
            )
        except Exception:  # the layer's metadata is written all the same
            self._logger.exception(f"layer {layer}: could not complete the metadata's records")
        try:
            path = store.save_metadata(metadata, result.started_at)
        except OSError as exc:
            self._logger.error(f"layer {layer}: could not write the metadata: {exc}")
            path = None
        if path is not None and self._on_layer_saved is not None:
            try:
                self._on_layer_saved(path)
            except Exception:
                self._logger.exception(f"layer {layer}: could not add the layer to the gallery")
        self._logger.info(
            f"layer {layer}: {len(metadata.images)}/{plan.count * len(cameras or [None])} images, "
            f"{len(result.failures)} failures, outcome {result.outcome}, "
            f"{result.timings.get('total', 0.0):.2f} s" + (f", metadata {path}" if path else "")
        )
        self._on_status(
            {
                "state": State.CAPTURED,
                "layer": layer,
                "outcome": result.outcome,
                "images": len(metadata.images),
                "failures": [f.message for f in result.failures],
                "total_s": result.timings.get("total"),
            }
        )
