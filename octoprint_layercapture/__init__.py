"""OctoPrint-LayerCapture: photographs a print at chosen layers from a grid of positions.

The plugin class only wires OctoPrint to the plain modules of this package, which
import nothing from OctoPrint.
"""

from __future__ import annotations

import copy
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import flask
import octoprint.plugin
from flask_babel import gettext
from octoprint.access.permissions import ADMIN_GROUP, Permissions
from octoprint.events import Events

from . import api, firmware
from . import settings as lc_settings
from .analysis.render_jobs import IndexGallery, RenderConfig, RenderRefused
from .analysis.renderer import VideoRenderer
from .analysis.video import TARGET_ALL, RenderTarget
from .camera_probe import camera_test_settings, probe_camera, unsaved_urls
from .cameras import WebcamInfo, choose_camera, webcam_info
from .gallery import CaptureIndex, print_id
from .grid import GridPlan
from .layers import LayerTargets, LayerTracker, LayerTrigger
from .ports import CameraPort, SequenceResult
from .printer_port import PARKED_AT_COMMAND, PLUGIN_TAG, OctoPrintPrinterPort, plugin_tags
from .routes import FILE_EVENTS, GalleryRoutes, VideoRoutes, file_routes
from .session import ArmedPrint, CaptureSession
from .status import LiveStatus, next_every_n, planned_layer_seconds
from .worker import CaptureRequest, CaptureWorker, PrintInfo

__plugin_name__ = "Layer Capture"
__plugin_pythoncompat__ = ">=3.9,<4"

# Job origins the printer prints itself (OctoPrint never sees those lines): "sdcard" up to
# OctoPrint 1.11, "printer" from 2.0 on.
PRINTER_STORAGES = ("sdcard", "printer")


class LayerCapturePlugin(
    GalleryRoutes,
    VideoRoutes,
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.SettingsPlugin,
    octoprint.plugin.EventHandlerPlugin,
    octoprint.plugin.TemplatePlugin,
    octoprint.plugin.AssetPlugin,
    octoprint.plugin.BlueprintPlugin,
):
    def __init__(self) -> None:
        super().__init__()
        self._last_settings_errors: List[Dict[str, str]] = []
        # The armed print, replaced as a whole (never mutated from here), so OctoPrint's
        # threads see the old session or the new one, never half of one.
        self._session: Optional[CaptureSession] = None
        # prints started (scripts hook) and PrintStarted events seen: events of an
        # earlier print that arrive late are told apart by these
        self._prints_started = 0
        self._print_events = 0
        self._live_status = LiveStatus()
        self._gallery = CaptureIndex()
        self._downloads = api.ZipDownloads()
        self._worker: Optional[CaptureWorker] = None
        self._renderer: Optional[VideoRenderer] = None
        self._camera_test_lock = threading.Lock()
        # what the connected firmware told about itself (FirmwareData, M211)
        self._firmware_name: Optional[str] = None
        self._soft_limits: Optional[firmware.SoftLimits] = None
        self._limits_watch: Optional[firmware.SoftLimitsWatch] = None

    # the routes read these (see routes.GalleryRoutes)
    @property
    def _tracker(self) -> Optional[LayerTracker]:
        session = self._session
        return None if session is None else session.tracker

    @property
    def _job(self) -> Optional[Dict[str, Any]]:
        session = self._session
        return None if session is None else {"print_info": session.armed.print_info}

    def initialize(self) -> None:
        self._worker = CaptureWorker(
            make_printer=self._job_port,
            make_camera=self._make_camera,
            on_status=self._publish_status,
            on_finished=self._on_sequence_finished,
            plugin_version=str(self._plugin_version),
            logger=self._logger,
            on_layer_saved=self._on_layer_saved,
        )
        self._renderer = VideoRenderer(
            gallery=IndexGallery(self._gallery_index),
            config=self._render_config,
            work_root=Path(self.get_plugin_data_folder()),
            may_render=self._why_not_render,
            on_update=lambda job: self._send_message({"type": "video", "job": job}),
            logger=self._logger,
            plugin_version=str(self._plugin_version),
        )

    ##~~ StartupPlugin mixin

    def on_after_startup(self) -> None:
        assert self._worker is not None and self._renderer is not None
        self._worker.start()
        self._renderer.start()
        threading.Thread(target=self._build_gallery, name="layercapture-index", daemon=True).start()
        try:
            values = self._current_settings()
        except lc_settings.InvalidSettings as exc:
            self._logger.warning(f"Stored settings are invalid, captures are off: {exc}")
            return
        self._logger.info(
            f"Layer Capture ready: {'enabled' if values.enabled else 'disabled'}, "
            f"{values.grid_size}x{values.grid_size} grid, stop mode {values.stop_mode}"
        )

    def _build_gallery(self) -> None:
        """Reads the capture folder once, off the start-up thread (it ends by itself)."""
        try:
            self._gallery_index().ensure_built()
        except Exception:
            self._logger.exception("Could not index the capture folder")

    def _on_layer_saved(self, path: Path) -> None:
        self._gallery.add_metadata_file(path)

    ##~~ ShutdownPlugin mixin

    def on_shutdown(self) -> None:
        session = self._session
        if session is not None:
            session.port.interrupt("shutdown")
        if self._renderer is not None:
            self._renderer.stop()
        if self._worker is not None:
            self._worker.stop()
        self._downloads.close()

    ##~~ EventHandlerPlugin mixin

    def on_event(self, event: str, payload: Optional[Dict[str, Any]]) -> None:
        payload = payload or {}
        if event == Events.PRINT_STARTED:
            self._on_print_started(payload)
            return
        if event == Events.FIRMWARE_DATA:
            self._on_firmware_data(payload)
            return
        if event in FILE_EVENTS:
            self._follow_file_change(payload)
            return
        session = self._session
        if event in (Events.DISCONNECTING, Events.DISCONNECTED, Events.ERROR):
            self._firmware_name = self._soft_limits = None
            if session is not None:
                session.port.interrupt("disconnected")
            self._disarm(event)
            return
        # events of the print before this one may arrive after this one started
        if session is None or session.number != self._print_events:
            return
        port = session.port
        if event in (
            Events.PRINT_DONE,
            Events.PRINT_FAILED,
            Events.PRINT_CANCELLED,
            Events.PRINT_CANCELLING,
        ):
            if event != Events.PRINT_DONE:
                port.interrupt("cancelled" if "Cancel" in event else "print failed")
            # a cancel disarms at PrintCancelling (PrintCancelled finds no session)
            self._render_after_print(session)
            self._disarm(event)
        elif event == Events.PRINT_PAUSED:
            port.on_paused(payload)
        elif event == Events.PRINT_RESUMED:
            port.on_resumed()
        elif event == Events.PRINTER_STATE_CHANGED:
            port.on_state_changed(payload.get("state_id"))
        elif event == Events.Z_CHANGE:
            # ZChange fires for z-hops and our own moves too, so it only feeds the status;
            # layers are decided from the extruding moves in the queuing hook.
            self._live_status.update({"z": payload.get("new")})
            snapshot = self._refresh_progress()
            if snapshot is not None:
                self._send_status(snapshot)

    def _on_print_started(self, payload: Dict[str, Any]) -> None:
        self._print_events += 1
        if self._print_events > self._prints_started:
            # OctoPrint started the job without its beforePrintStarted script (the hook
            # arms there, before the first line): arm now, late but better than never
            self._prints_started = self._print_events
            self._arm(payload, self._prints_started)

    def _arm_at_start(self) -> None:
        """Scripts hook, beforePrintStarted: OctoPrint is starting a job and has not sent
        a line of it yet."""
        self._prints_started += 1
        try:
            job = self._printer.get_current_job() or {}
        except Exception:
            self._logger.exception("Could not read the job being started")
            job = {}
        self._arm(dict(job.get("file") or {}), self._prints_started)

    def _arm(self, payload: Dict[str, Any], number: int) -> None:
        self._disarm("PrintStarted")
        if payload.get("origin") in PRINTER_STORAGES:
            self._publish_status(
                {"state": "unsupported", "message": "SD card prints are not captured"}
            )
            return
        try:
            values = self._current_settings()
        except lc_settings.InvalidSettings as exc:
            self._logger.warning(f"Settings are invalid, this print is not captured: {exc}")
            self._publish_status({"state": "error", "message": f"invalid settings: {exc}"})
            return
        if not values.enabled:
            return
        if values.capture_every_n_layers == 0 and not values.capture_z_heights:
            self._logger.info("No layers selected (every N = 0 and no Z heights)")
            return
        bounds = values.bounds(self._profile_bounds())
        limits = self._soft_limits
        if bounds is not None and limits is not None:
            bounds = bounds.within(
                limits.min_x, limits.min_y, limits.max_x, limits.max_y, limits.max_z
            )
        gcode_file = str(payload.get("name") or payload.get("path") or "")
        try:
            planned: Optional[float] = planned_layer_seconds(values, bounds)
        except (ValueError, ZeroDivisionError):
            planned = None
        self._live_status.begin_print(gcode_file, planned)
        family = firmware.resolve_family(values.firmware, self._firmware_name)
        armed = ArmedPrint(
            settings=values,
            bounds=bounds,
            print_info=PrintInfo(gcode_file=gcode_file, started_at=datetime.now()),
            store_root=Path(self._settings.global_get_basefolder("uploads"))
            / values.capture_folder,
            firmware_family=family,
        )
        port = OctoPrintPrinterPort(
            self._printer,
            values.stop_mode,
            self._logger,
            wait_for_moves=values.wait_for_moves,
            pause_reports_position=bool(
                self._settings.global_get_boolean(["serial", "logPositionOnPause"])
            ),
        )
        tracker = LayerTracker(
            LayerTargets(
                every_n=values.capture_every_n_layers,
                z_heights=values.capture_z_heights,
                min_layer_height=values.min_layer_height,
            ),
            family=family,
        )
        self._session = CaptureSession(armed, tracker, port, number, self._logger)
        self._publish_status({"state": "waiting", "layer": 0})

    def _disarm(self, reason: str) -> None:
        session = self._session
        self._session = None
        if session is None:
            return
        if session.tracker.vase_mode:
            self._logger.warning("Spiral vase mode detected: layers were not captured")
        self._publish_status({"state": "idle", "reason": reason})

    ##~~ G-code hooks (OctoPrint's comm thread: keep them cheap)

    def on_gcode_queuing(
        self,
        comm_instance: Any,
        phase: str,
        cmd: str,
        cmd_type: Optional[str],
        gcode: Optional[str],
        subcode: Optional[str] = None,
        tags: Optional[Set[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        session = self._session
        if session is None or not tags:
            return None
        if "source:file" not in tags:
            if "script:afterPrintPaused" in tags and PLUGIN_TAG not in tags:
                session.port.on_pause_script_line(cmd, gcode)
            return None
        trigger = session.tracker.feed(cmd)
        if trigger is not None and self._stop_job_for(session, trigger, held_line=cmd):
            # the first move of the next layer waits until the capture is done
            return (None,)
        return None

    def on_atcommand_queuing(
        self,
        comm_instance: Any,
        phase: str,
        command: str,
        parameters: str,
        tags: Optional[Set[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        session = self._session
        if session is None or command.upper() != "LAYERCAPTURE":
            return
        trigger = session.tracker.feed_marker(parameters or "")
        if trigger is not None:
            self._stop_job_for(session, trigger, held_line=None)

    def on_atcommand_sending(
        self,
        comm_instance: Any,
        phase: str,
        command: str,
        parameters: str,
        tags: Optional[Set[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        session = self._session
        if session is not None and command.upper() == PARKED_AT_COMMAND:
            position = getattr(comm_instance, "pause_position", None)
            as_dict = getattr(position, "as_dict", None)
            session.port.on_parked(as_dict() if callable(as_dict) else None)

    def on_gcode_sending(
        self,
        comm_instance: Any,
        phase: str,
        cmd: str,
        cmd_type: Optional[str],
        gcode: Optional[str],
        subcode: Optional[str] = None,
        tags: Optional[Set[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        session = self._session
        if session is not None and session.port.pending_confirm_tag() is not None:
            session.port.on_sending(gcode, tags)

    def on_gcode_received(self, comm_instance: Any, line: str, *args: Any, **kwargs: Any) -> str:
        # every line the printer sends passes here: leave at once unless a confirm waits
        session = self._session
        if session is not None and session.port.listening:
            session.port.on_received(line)
        if self._limits_watch is not None:
            self._read_soft_limits(line)
        return line

    def _stop_job_for(
        self, session: CaptureSession, trigger: LayerTrigger, held_line: Optional[str]
    ) -> bool:
        """Stops the job on the comm thread, so no further line of the file goes out."""
        worker = self._worker
        stopped = worker is not None and session.stop_for(trigger, held_line, worker)
        if stopped and self._renderer is not None:
            self._renderer.hold_now()  # no ffmpeg while the head moves
        return stopped

    def _on_sequence_finished(self, request: CaptureRequest, result: SequenceResult) -> None:
        # the print that asked, even when it has ended meanwhile (its hold must go)
        session = request.owner if isinstance(request.owner, CaptureSession) else self._session
        if session is not None:
            session.sequence_finished(request, result)
        for note in result.notes:
            self._logger.info(f"layer {request.trigger.layer}: {note}")
        if self._renderer is not None:
            self._renderer.wake()  # a render held for this capture may go on

    def on_gcode_script(
        self, comm_instance: Any, script_type: str, script_name: str, *args: Any, **kwargs: Any
    ) -> Any:
        if script_type != "gcode":
            return None
        if script_name == "beforePrintStarted":
            self._arm_at_start()
            return None
        session = self._session
        if session is None:
            return None
        if script_name == "afterPrintPaused":
            suffix = session.pause_script()
            return None if suffix is None else (None, suffix, None, {PLUGIN_TAG})
        if script_name == "beforePrintResumed":
            lines = session.resume_script()
            return None if lines is None else (lines[0], lines[1], None, {PLUGIN_TAG})
        return None

    def _job_port(self) -> OctoPrintPrinterPort:
        session = self._session
        if session is None:
            raise RuntimeError("no print job is armed")
        return session.port

    ##~~ videos (analysis.renderer)

    def _render_config(self) -> RenderConfig:
        """OctoPrint's ffmpeg and timelapse encoding settings, the plugin's frame rate."""
        return RenderConfig(
            ffmpeg=self._settings.global_get(["webcam", "ffmpeg"]),
            bitrate=self._settings.global_get(["webcam", "bitrate"]),
            threads=self._settings.global_get(["webcam", "ffmpegThreads"]),
            fps=self._settings.get_int(["video_fps"]) or lc_settings.DEFAULTS["video_fps"],
            hold_seconds=self._settings.get_float(["video_hold_seconds"]) or 0.0,
        )

    def _why_not_render(self) -> Optional[str]:
        """The renderer's gate (polled on its thread): None when it may run now."""
        worker = self._worker
        if worker is not None and worker.busy:
            return "a capture sequence is running"
        printer = self._printer
        job_active = printer.is_printing() or printer.is_pausing() or printer.is_paused()
        if job_active and not self._settings.get_boolean(["video_render_while_printing"]):
            return "a print is running (videos render once it has ended)"
        return None

    def _render_after_print(self, session: CaptureSession) -> None:
        """Queues the print's videos when it ended with captured layers, if so set; after
        the image writer's last files (its metadata must be indexed first)."""
        if not self._settings.get_boolean(["video_render_after_print"]):
            return
        if not session.tracker.captured_layers() or self._worker is None:
            return
        info = session.armed.print_info
        pid = print_id(info.gcode_file, info.started_at.isoformat(timespec="seconds"), "")

        def queue_render() -> None:
            renderer = self._renderer
            if renderer is None:
                return
            try:
                renderer.submit(pid, RenderTarget(TARGET_ALL), auto=True)
            except RenderRefused as exc:
                self._logger.warning(f"Videos of the print that ended not rendered: {exc.message}")

        self._worker.after_writes(queue_render)

    ##~~ what the firmware tells about itself

    def _on_firmware_data(self, payload: Dict[str, Any]) -> None:
        self._firmware_name = str(payload.get("name") or "") or None
        self._soft_limits = None
        try:
            setting = self._current_settings().firmware
        except lc_settings.InvalidSettings:
            setting = firmware.AUTO
        family = firmware.resolve_family(setting, self._firmware_name)
        self._logger.info(
            f"Firmware {self._firmware_name!r}: read as {family or 'unknown (Marlin 2 rules)'}"
        )
        if family in firmware.REPORTS_SOFT_LIMITS:
            self._limits_watch = firmware.SoftLimitsWatch(time.monotonic())
            self._printer.commands(
                [firmware.SOFT_LIMITS_QUERY], tags=plugin_tags("layercapture:soft-limits")
            )

    def _read_soft_limits(self, line: str) -> None:
        watch = self._limits_watch
        if watch is None or not watch.feed(line, time.monotonic()):
            return
        self._limits_watch = None
        self._soft_limits = watch.limits
        if watch.limits is not None:
            self._logger.info(f"Firmware soft limits: {watch.limits}")

    def _make_camera(self, request: CaptureRequest, plan: GridPlan) -> CameraPort:
        points = [(p.x, p.y) for p in plan.points]
        return choose_camera(request.settings, self._find_webcam, request.bounds, points)

    def _find_webcam(self, name: str) -> Optional[WebcamInfo]:
        """The webcam called ``name``; "" is OctoPrint's snapshot webcam."""
        for webcam in self._webcams():
            if (webcam.name == name) if name else webcam.is_snapshot_webcam:
                return webcam
        return None

    def _webcams(self) -> List[WebcamInfo]:
        import octoprint.webcams

        try:
            provided = octoprint.webcams.get_webcams()
            default = octoprint.webcams.get_snapshot_webcam()
            default_name = default.config.name if default is not None else None
            return [webcam_info(webcam, default_name) for webcam in provided.values()]
        except Exception:
            self._logger.exception("Could not look up OctoPrint's webcams")
            return []

    def _publish_status(self, update: Dict[str, Any]) -> None:
        self._refresh_progress()
        self._send_status(self._live_status.update(update))

    def _refresh_progress(self) -> Optional[Dict[str, Any]]:
        """Layer being printed and next targets; the new status when they changed."""
        session = self._session
        if session is None:
            return None
        tracker = session.tracker
        pending = tracker.pending_z_heights()
        return self._live_status.set_progress(
            tracker.layer,
            next_every_n(
                tracker.layer,
                session.armed.settings.capture_every_n_layers,
                tracker.captured_layers(),
            ),
            pending[0] if pending else None,
        )

    def _send_status(self, snapshot: Dict[str, Any]) -> None:
        self._send_message({"type": "status", "status": snapshot})

    def _send_message(self, data: Dict[str, Any]) -> None:
        """A push to exactly the users allowed to read it (see on_socket_emit); OctoPrint
        would send plugin messages to everyone with its Status permission."""
        self._plugin_manager.send_plugin_message(
            self._identifier, data, permissions=[self._push_permission(data.get("type"))]
        )

    @staticmethod
    def _push_permission(kind: Any) -> Any:
        # looked up when used: the plugin's permissions are registered after start-up
        if kind == "settings_rejected":
            return Permissions.SETTINGS
        return Permissions.PLUGIN_LAYERCAPTURE_VIEW

    def on_socket_emit(
        self, socket: Any, user: Any, message: str, payload: Any, *args: Any, **kwargs: Any
    ) -> bool:
        """The ``octoprint.server.sockjs.emit`` hook: our plugin messages only to users with
        the permission of their type (also messages OctoPrint held back for a socket that
        had not logged in yet, which it would deliver unchecked at login)."""
        if message != "plugin" or not isinstance(payload, dict):
            return True
        if payload.get("plugin") != self._identifier:
            return True
        data = payload.get("data")
        kind = data.get("type") if isinstance(data, dict) else None
        return bool(user and user.has_permission(self._push_permission(kind)))

    ##~~ SettingsPlugin mixin

    def get_settings_defaults(self) -> Dict[str, Any]:
        return copy.deepcopy(lc_settings.DEFAULTS)

    def get_settings_version(self) -> int:
        return lc_settings.SETTINGS_VERSION

    def on_settings_migrate(self, target: int, current: Optional[int]) -> None:
        if current is not None and current >= target:
            return
        stored = self._settings.get_all_data(merged=False, incl_defaults=False) or {}
        migrated = lc_settings.migrate(stored, current)
        for key in set(stored) - set(migrated):
            self._settings.remove([key])
        for key, value in migrated.items():
            if key in lc_settings.DEFAULTS:
                self._settings.set([key], value)
        if migrated != stored:
            self._logger.info(f"Migrated settings from version {current} to {target}")

    def on_settings_save(self, data: Dict[str, Any]) -> Dict[str, Any]:
        if not isinstance(data, dict):
            self._reject([lc_settings.SettingsError("settings", "expected an object")], {})
            return {}
        current = self._settings.get_all_data(merged=True) or {}
        candidate = {key: current.get(key) for key in lc_settings.DEFAULTS}
        candidate.update(data)
        try:
            values = lc_settings.validate(candidate, self._profile_bounds())
        except lc_settings.InvalidSettings as exc:
            self._reject(exc.errors, candidate)
            return {}
        self._last_settings_errors = []
        cleaned = lc_settings.to_storable(values)
        changed = {key: cleaned[key] for key in data if key in cleaned}
        return octoprint.plugin.SettingsPlugin.on_settings_save(self, changed)

    def _reject(self, errors: List[lc_settings.SettingsError], data: Dict[str, Any]) -> None:
        # values that may carry credentials are masked in all three places
        self._last_settings_errors = api.settings_errors(errors, data)
        self._logger.warning(
            "Refused invalid Layer Capture settings, nothing saved: "
            + "; ".join(f"{e['key']}: {e['message']}" for e in self._last_settings_errors)
        )
        self._send_message({"type": "settings_rejected", "errors": self._last_settings_errors})

    def _current_settings(self) -> lc_settings.CaptureSettings:
        data = self._settings.get_all_data(merged=True) or {}
        return lc_settings.validate(
            {key: data.get(key) for key in lc_settings.DEFAULTS}, self._profile_bounds()
        )

    def _profile_bounds(self) -> Optional[lc_settings.Bounds]:
        from .profile import bounds_from_profile

        try:
            profile = self._printer_profile_manager.get_current_or_default()
        except Exception:
            self._logger.exception("Could not read the active printer profile")
            return None
        return bounds_from_profile(profile)

    ##~~ TemplatePlugin mixin

    def get_template_configs(self) -> List[Dict[str, Any]]:
        return [
            {"type": "settings", "custom_bindings": True},
            {"type": "tab", "name": gettext("Layer Capture"), "custom_bindings": True},
        ]

    def is_template_autoescaped(self) -> bool:
        return True

    ##~~ AssetPlugin mixin

    def get_assets(self) -> Dict[str, List[str]]:
        return {
            "js": [
                "js/layercapture_settings.js",
                "js/layercapture_videos.js",
                "js/layercapture_compare.js",
                "js/layercapture_tab.js",
            ],
            "clientjs": ["clientjs/layercapture.js"],
            "css": ["css/layercapture.css"],
        }

    ##~~ BlueprintPlugin mixin

    def is_blueprint_protected(self) -> bool:
        return True

    def is_blueprint_csrf_protected(self) -> bool:
        return True

    @octoprint.plugin.BlueprintPlugin.route("/settings/validate", methods=["POST"])
    @Permissions.SETTINGS.require(403)
    def validate_settings(self) -> Any:
        data = flask.request.get_json(silent=True)
        if not isinstance(data, dict):
            return flask.make_response(
                flask.jsonify(errors=[{"key": "settings", "message": "expected a JSON object"}]),
                400,
            )
        current = self._settings.get_all_data(merged=True) or {}
        candidate = {key: current.get(key) for key in lc_settings.DEFAULTS}
        candidate.update(data)
        profile_bounds = self._profile_bounds()
        preview = api.grid_preview(candidate, profile_bounds)
        try:
            values = lc_settings.validate(candidate, profile_bounds)
        except lc_settings.InvalidSettings as exc:
            errors = api.settings_errors(exc.errors, candidate)
            return flask.make_response(
                flask.jsonify(errors=errors, preview=preview, estimate=None), 400
            )
        measured_s, measured_layers = self._live_status.measured()
        estimate = {
            "planned_s": planned_layer_seconds(values, values.bounds(profile_bounds)),
            "measured_s": measured_s,
            "measured_layers": measured_layers,
        }
        return flask.jsonify(errors=[], preview=preview, estimate=estimate)

    @octoprint.plugin.BlueprintPlugin.route("/webcams", methods=["GET"])
    @Permissions.SETTINGS.require(403)
    def get_webcams(self) -> Any:
        return flask.jsonify(webcams=[webcam.to_json() for webcam in self._webcams()])

    @octoprint.plugin.BlueprintPlugin.route("/camera/test", methods=["POST"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def test_camera(self) -> Any:
        saved = self._settings.get_all_data(merged=True) or {}
        body = flask.request.get_json(silent=True)
        unsaved = unsaved_urls(body, saved)
        if unsaved and not Permissions.SETTINGS.can():
            message = (
                f"{' and '.join(unsaved)} differ from the saved settings: trying a camera "
                "address that is not saved needs the Settings permission (save it first, "
                "or ask an administrator)"
            )
            return flask.make_response(flask.jsonify(ok=False, error=message), 403)
        try:
            values = camera_test_settings(body, saved)
        except lc_settings.InvalidSettings as exc:
            errors = api.settings_errors(exc.errors, body if isinstance(body, dict) else {})
            return flask.make_response(flask.jsonify(errors=errors), 400)
        if self._worker is not None and self._worker.busy:
            message = "a capture sequence is running; test the camera when it is done"
            return flask.make_response(flask.jsonify(ok=False, error=message), 409)
        # one test at a time: each may hold a web request thread for its timeouts
        if not self._camera_test_lock.acquire(blocking=False):
            message = "another camera test is running"
            return flask.make_response(flask.jsonify(ok=False, error=message), 409)
        try:
            camera = choose_camera(values, self._find_webcam)
            return flask.jsonify(probe_camera(camera, values))
        finally:
            self._camera_test_lock.release()

    ##~~ http routes hook (large files: images, thumbnails, metadata, zips)

    def route_hook(self, server_routes: Any, *args: Any, **kwargs: Any) -> List[Any]:
        return file_routes(self._gallery_index, self._downloads)

    ##~~ access permissions hook

    def get_additional_permissions(self, *args: Any, **kwargs: Any) -> List[Dict[str, Any]]:
        return [
            {
                "key": "VIEW",
                "name": "View captures",
                "description": gettext("Allows to see the capture status and the gallery"),
                "roles": ["view"],
                "default_groups": [ADMIN_GROUP],
            },
            {
                "key": "MANAGE",
                "name": "Manage captures",
                "description": gettext(
                    "Allows to delete captures and to take test captures with the camera"
                ),
                "roles": ["manage"],
                "dangerous": True,
                "default_groups": [ADMIN_GROUP],
            },
        ]

    ##~~ Software update hook

    def get_update_information(self) -> Dict[str, Any]:
        return {
            "layercapture": {
                "displayName": __plugin_name__,
                "displayVersion": self._plugin_version,
                "type": "github_release",
                "user": "octoprint-layercapture",
                "repo": "OctoPrint-LayerCapture",
                "current": self._plugin_version,
                "pip": "https://github.com/octoprint-layercapture/OctoPrint-LayerCapture/"
                "archive/{target_version}.zip",
            }
        }


__plugin_implementation__ = LayerCapturePlugin()

__plugin_hooks__ = {
    "octoprint.comm.protocol.gcode.queuing": __plugin_implementation__.on_gcode_queuing,
    "octoprint.comm.protocol.gcode.sending": __plugin_implementation__.on_gcode_sending,
    "octoprint.comm.protocol.gcode.received": __plugin_implementation__.on_gcode_received,
    "octoprint.comm.protocol.scripts": __plugin_implementation__.on_gcode_script,
    "octoprint.comm.protocol.atcommand.queuing": (__plugin_implementation__.on_atcommand_queuing),
    "octoprint.comm.protocol.atcommand.sending": (__plugin_implementation__.on_atcommand_sending),
    "octoprint.access.permissions": __plugin_implementation__.get_additional_permissions,
    "octoprint.server.http.routes": __plugin_implementation__.route_hook,
    "octoprint.server.sockjs.emit": __plugin_implementation__.on_socket_emit,
    "octoprint.plugin.softwareupdate.check_config": (
        __plugin_implementation__.get_update_information
    ),
}
