"""What each blueprint route does, built from the collaborators it needs.

The routes (``web/routes.py``) only check permissions and call one method here; the
methods parse the request with :mod:`web.api`, ask the collaborators and answer with
Flask responses. Nothing here reaches into the plugin object.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence

import flask

from .. import settings as lc_settings
from ..analysis.video.jobs import RenderRefused
from ..analysis.video.plan import grid_size_of, images_per_position, print_cameras
from ..analysis.video.renderer import VideoRenderer
from ..calibration import CalibrationRefused, PluginCalibration
from ..cameras.probe import camera_test_settings, probe_camera, unsaved_url
from ..cameras.sources import WebcamInfo, camera_port
from ..capture.estimate import MotionLimits
from ..capture.status import LiveStatus, plan_layer_time
from ..session import CaptureSession, gallery_print_id
from ..settings_reader import SettingsReader
from ..store.index import CaptureIndex, capture_days, is_print_id
from . import api
from .downloads import ZipDownloads
from .push import SETTINGS_REJECTED, Pushes

_logger = logging.getLogger("octoprint.plugins.layercapture.routes")


def error(status: int, message: str) -> Any:
    return flask.make_response(flask.jsonify(error=message), status)


def _errors(status: int, errors: List[Dict[str, str]], **extra: Any) -> Any:
    return flask.make_response(flask.jsonify(errors=errors, **extra), status)


class Webcams(Protocol):
    """OctoPrint's webcams, as :class:`cameras.webcams.OctoPrintWebcams` lists them."""

    def all(self) -> List[WebcamInfo]: ...

    def find(self, name: str) -> Optional[WebcamInfo]: ...


@dataclass
class Endpoints:
    reader: SettingsReader
    index: CaptureIndex
    live_status: LiveStatus
    session: Callable[[], Optional[CaptureSession]]  # the armed print, if any
    zips: ZipDownloads
    capturing: Callable[[], bool]  # a capture sequence is queued or moving the head
    webcams: Webcams
    pushes: Pushes
    may_change_settings: Callable[[], bool]  # the requesting user has Settings
    motion_limits: Callable[[], MotionLimits]  # what the time estimate assumes of the printer
    videos: VideoRenderer
    calibration: PluginCalibration

    def __post_init__(self) -> None:
        self._settings_errors: List[Dict[str, str]] = []
        self._camera_test = threading.Lock()

    # ---- the gallery

    def gallery(self) -> CaptureIndex:
        """The index, on the capture folder the settings name now."""
        self.index.use_root(self.reader.capture_root())
        return self.index

    def build_gallery_later(self) -> None:
        """Reads the capture folder once on a thread of its own (it ends by itself), off
        OctoPrint's start-up."""

        def build() -> None:
            try:
                self.gallery().ensure_built()
            except Exception:
                _logger.exception("Could not index the capture folder")

        threading.Thread(target=build, name="layercapture-index", daemon=True).start()

    def current_print_id(self) -> Optional[str]:
        """The gallery id of the print being captured (armed), else None."""
        session = self.session()
        return None if session is None else gallery_print_id(session)

    def status(self) -> Any:
        status = self.live_status.snapshot()
        session = self.session()
        if session is not None:
            status["captured_layers"] = list(session.tracker.captured_layers())
        return flask.jsonify(status=status, settings_errors=self._settings_errors)

    def prints(self, args: Mapping[str, Any]) -> Any:
        try:
            offset, limit = api.parse_page(args)
        except api.ApiError as exc:
            return error(exc.status, exc.message)
        answer = self.gallery().prints(offset, limit).to_dict("prints")
        answer["current"] = self.current_print_id()
        return flask.jsonify(answer)

    def print_summary(self, pid: str) -> Any:
        summary = self.gallery().print_summary(pid) if is_print_id(pid) else None
        if summary is None:
            return error(404, "no such print")
        return flask.jsonify(summary)

    def layers(self, pid: str, args: Mapping[str, Any]) -> Any:
        try:
            api.check_print_id(pid)
            offset, limit = api.parse_page(args)
        except api.ApiError as exc:
            return error(exc.status, exc.message)
        text = self.gallery().layers_json(pid, offset, limit)
        if text is None:
            return error(404, "no such print")
        # compact, pre-serialised layers: a page may list thousands of images
        return flask.Response(text, mimetype="application/json")

    def delete_print(self, pid: str) -> Any:
        if not is_print_id(pid):
            return error(404, "no such print")
        if pid == self.current_print_id():
            return error(409, "this print is being captured; delete it when it has ended")
        if not self.videos.cancel_print(pid):  # its videos are files of the print
            return error(409, "a video of this print is still being cancelled; try again")
        with self.zips.deleting(pid) as nobody_downloads:
            if not nobody_downloads:
                return error(409, "this print is being downloaded; delete it when that has ended")
            result = self.gallery().delete_print(pid)
        if result is None:
            return error(404, "no such print")
        if result.failed:
            return error(500, f"could not delete {len(result.failed)} file(s), see the log")
        _logger.info(f"Deleted print {pid}: {result.files} files")
        return flask.jsonify(deleted=result.files)

    # ---- videos

    def print_videos(self, pid: str) -> Any:
        index = self.gallery()
        page = index.layers(pid) if is_print_id(pid) else None
        if page is None:
            return error(404, "no such print")
        return flask.jsonify(
            videos=index.videos(pid),
            grid_size=grid_size_of(page.items),
            positions=sorted(images_per_position(page.items)),
            cameras=print_cameras(page.items),
            render=self.videos.job_for(pid),
            ffmpeg_error=self.videos.ffmpeg_problem(),
            fps=self.reader.video_fps(),
            hold_seconds=self.reader.video_hold_seconds(),
        )

    def render_videos(self, pid: str, body: Any) -> Any:
        try:
            api.check_print_id(pid)
            target = api.parse_render_request(body)
            job = self.videos.submit(pid, target)
        except (api.ApiError, RenderRefused) as exc:
            return error(exc.status, exc.message)
        return flask.make_response(flask.jsonify(job=job), 202)

    def render_jobs(self) -> Any:
        return flask.jsonify(self.videos.jobs())

    def cancel_render(self, job_id: int) -> Any:
        job = self.videos.cancel(job_id)
        if job is None:
            return error(404, "no such render queued or running")
        return flask.jsonify(job=job)

    def rescan(self) -> Any:
        index = self.gallery()
        index.rebuild()
        prints, files = index.counts()
        return flask.jsonify(prints=prints, files=files)

    def follow_file_change(self, payload: Mapping[str, Any]) -> None:
        """A file event of OctoPrint's file manager: the day folders of ours that it touched
        are read again in the background, so the gallery stays true."""
        if payload.get("storage") != "local":
            return
        try:
            folder = self.reader.capture_root().relative_to(self.reader.uploads().resolve())
        except (OSError, ValueError):
            return
        paths = [payload.get(key) for key in ("path", "source_path", "destination_path")]
        touched = [capture_days(folder.as_posix(), p) for p in paths if isinstance(p, str)]
        if any(days is None for days in touched):
            self.gallery().refresh_later(None)  # the capture folder itself
        elif any(touched):
            self.gallery().refresh_later(set().union(*(days or set() for days in touched)))

    # ---- settings

    def validate_settings(self, body: Any) -> Any:
        if not isinstance(body, dict):
            return _errors(400, [{"key": "settings", "message": "expected a JSON object"}])
        candidate = self.reader.with_form(body)
        profile_bounds = self.reader.profile_bounds()
        preview = api.grid_preview(candidate, profile_bounds)
        try:
            values = lc_settings.validate(candidate, profile_bounds)
        except lc_settings.InvalidSettings as exc:
            errors = api.settings_errors(exc.errors, candidate)
            return _errors(400, errors, preview=preview, estimate=None)
        measured_s, measured_layers = self.live_status.measured()
        planned = plan_layer_time(values, values.bounds(profile_bounds), self.motion_limits())
        estimate = {
            "planned_s": planned.total_s,
            "planned_parts": planned.parts(),
            "measured_s": measured_s,
            "measured_layers": measured_layers,
        }
        return flask.jsonify(errors=[], preview=preview, estimate=estimate)

    def settings_to_save(self, data: Any) -> Optional[Dict[str, Any]]:
        """A settings save from OctoPrint (the keys the form changed): the values to store,
        validated with every other setting as stored, or None when refused (logged, kept
        for ``GET status`` and pushed, see :meth:`settings_rejected`)."""
        if not isinstance(data, dict):
            refused = lc_settings.SettingsError("settings", "expected an object")
            self.settings_rejected([refused], {})
            return None
        candidate = self.reader.with_form(data)
        try:
            values = lc_settings.validate(candidate, self.reader.profile_bounds())
        except lc_settings.InvalidSettings as exc:
            self.settings_rejected(exc.errors, candidate)
            return None
        self._settings_errors = []
        cleaned = lc_settings.to_storable(values)
        return {key: cleaned[key] for key in data if key in cleaned}

    def settings_rejected(
        self, errors: Sequence[lc_settings.SettingsError], data: Mapping[str, Any]
    ) -> None:
        """A save refused: logged, kept for ``GET status`` and pushed to Settings users,
        with values that may carry credentials masked in all three."""
        self._settings_errors = api.settings_errors(errors, data)
        _logger.warning(
            "Refused invalid Layer Capture settings, nothing saved: "
            + "; ".join(f"{e['key']}: {e['message']}" for e in self._settings_errors)
        )
        self.pushes.send({"type": SETTINGS_REJECTED, "errors": self._settings_errors})

    # ---- Calibrate (moves the head: only while the printer is idle)

    def calibrate(self, body: Any) -> Any:
        try:
            state = self.calibration.start(body)
        except CalibrationRefused as exc:
            return _errors(exc.status, exc.errors, error=exc.message)
        except lc_settings.InvalidSettings as exc:
            return error(409, f"the saved settings are invalid: {exc}")
        return flask.make_response(flask.jsonify(calibration=state), 202)

    def calibration_state(self) -> Any:
        calibration = self.calibration
        return flask.jsonify(
            calibration=calibration.calibrator.state(), refused=calibration.refusal()
        )

    # ---- cameras

    def webcam_list(self) -> Any:
        return flask.jsonify(webcams=[webcam.to_json() for webcam in self.webcams.all()])

    def test_camera(self, body: Any) -> Any:
        saved = self.reader.stored()
        if unsaved_url(body, saved) and not self.may_change_settings():
            message = (
                "this camera's URL is not one of the saved cameras': trying a camera "
                "address that is not saved needs the Settings permission (save it first, or "
                "ask an administrator)"
            )
            return flask.make_response(flask.jsonify(ok=False, error=message), 403)
        try:
            values, chosen = camera_test_settings(body, saved)
        except lc_settings.InvalidSettings as exc:
            form = body if isinstance(body, dict) else {}
            return _errors(400, api.settings_errors(exc.errors, form))
        if self.capturing():
            message = "a capture sequence is running; test the camera when it is done"
            return flask.make_response(flask.jsonify(ok=False, error=message), 409)
        # one test at a time: each may hold a web request thread for its timeouts
        if not self._camera_test.acquire(blocking=False):
            message = "another camera test is running"
            return flask.make_response(flask.jsonify(ok=False, error=message), 409)
        try:
            camera = camera_port(chosen, values, self.webcams.find)
            return flask.jsonify(probe_camera(camera, values))
        finally:
            self._camera_test.release()
