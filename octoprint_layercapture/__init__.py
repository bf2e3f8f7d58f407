"""OctoPrint-LayerCapture: photographs a print at chosen layers from a grid of positions.

The plugin class only wires OctoPrint to the plain modules of this package, which
import nothing from OctoPrint.
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import flask
import octoprint.plugin
from flask_babel import gettext
from octoprint.access.permissions import ADMIN_GROUP, Permissions

from . import api
from . import settings as lc_settings
from .camera_probe import camera_test_settings, probe_camera
from .cameras import WebcamInfo, choose_camera, webcam_info
from .gallery import CaptureIndex
from .grid import GridPlan
from .layers import LayerTargets, LayerTracker, LayerTrigger
from .ports import OUTCOME_INTERRUPTED, CameraPort, SequenceResult
from .printer_port import PLUGIN_TAG, OctoPrintPrinterPort
from .routes import GalleryRoutes, file_routes
from .status import LiveStatus, next_every_n, plan_layer_time, planned_layer_seconds
from .worker import CaptureRequest, CaptureWorker, PrintInfo

__plugin_name__ = "Layer Capture"
__plugin_pythoncompat__ = ">=3.9,<4"

# Job origins the printer prints itself (OctoPrint never sees those lines): "sdcard" up to
# OctoPrint 1.11, "printer" from 2.0 on.
PRINTER_STORAGES = ("sdcard", "printer")


class LayerCapturePlugin(
    GalleryRoutes,
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
        # Per-print state. Set on OctoPrint's event thread, read on the comm thread: each is
        # replaced as a whole (never mutated in place), so readers see old or new, not half.
        self._tracker: Optional[LayerTracker] = None
        self._port: Optional[OctoPrintPrinterPort] = None
        self._job: Optional[Dict[str, Any]] = None
        self._live_status = LiveStatus()
        self._gallery = CaptureIndex()
        self._worker: Optional[CaptureWorker] = None
        # the held first line of a layer, sent with the next resume (see _stop_job_for)
        self._owed_line: Optional[str] = None
        self._camera_test_lock = threading.Lock()

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

    ##~~ StartupPlugin mixin

    def on_after_startup(self) -> None:
        assert self._worker is not None
        self._worker.start()
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
        port = self._port
        if port is not None:
            port.interrupt("shutdown")
        if self._worker is not None:
            self._worker.stop()

    ##~~ EventHandlerPlugin mixin

    def on_event(self, event: str, payload: Optional[Dict[str, Any]]) -> None:
        payload = payload or {}
        port = self._port
        if event == "PrintStarted":
            self._arm(payload)
        elif event in ("PrintDone", "PrintFailed", "PrintCancelled", "PrintCancelling"):
            if port is not None and event != "PrintDone":
                port.interrupt("cancelled" if "Cancel" in event else "print failed")
            self._disarm(event)
        elif event in ("Disconnecting", "Disconnected", "Error"):
            if port is not None:
                port.interrupt("disconnected")
            self._disarm(event)
        elif port is None:
            return
        elif event == "PrintPaused":
            port.on_paused(payload)
        elif event == "PrintResumed":
            port.on_resumed()
        elif event == "PrinterStateChanged":
            port.on_state_changed(payload.get("state_id"))
        elif event == "ZChange":
            # ZChange fires for z-hops and our own moves too, so it only feeds the status;
            # layers are decided from the extruding moves in the queuing hook.
            self._live_status.update({"z": payload.get("new")})
            snapshot = self._refresh_progress()
            if snapshot is not None:
                self._send_status(snapshot)

    def _arm(self, payload: Dict[str, Any]) -> None:
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
        gcode_file = str(payload.get("name") or payload.get("path") or "")
        try:
            planned: Optional[float] = planned_layer_seconds(values, bounds)
        except (ValueError, ZeroDivisionError):
            planned = None
        self._live_status.begin_print(gcode_file, planned)
        self._job = {
            "settings": values,
            "bounds": bounds,
            "print_info": PrintInfo(gcode_file=gcode_file, started_at=datetime.now()),
            "store_root": Path(self._settings.global_get_basefolder("uploads"))
            / values.capture_folder,
        }
        self._port = OctoPrintPrinterPort(
            self._printer, values.stop_mode, self._logger, wait_for_moves=values.wait_for_moves
        )
        self._tracker = LayerTracker(
            LayerTargets(
                every_n=values.capture_every_n_layers,
                z_heights=values.capture_z_heights,
                min_layer_height=values.min_layer_height,
            )
        )
        self._publish_status({"state": "waiting", "layer": 0})

    def _disarm(self, reason: str) -> None:
        self._owed_line = None
        tracker = self._tracker
        self._tracker = None
        if tracker is not None and tracker.vase_mode:
            self._logger.warning("Spiral vase mode detected: layers were not captured")
        if tracker is not None:
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
        tracker = self._tracker
        if tracker is None or not tags or "source:file" not in tags:
            return None
        trigger = tracker.feed(cmd)
        if trigger is not None and self._stop_job_for(trigger, held_line=cmd):
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
        tracker = self._tracker
        if tracker is None or command.upper() != "LAYERCAPTURE":
            return
        trigger = tracker.feed_marker(parameters or "")
        if trigger is not None:
            self._stop_job_for(trigger, held_line=None)

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
        port = self._port
        if port is not None and port.pending_confirm_tag() is not None:
            port.on_sending(gcode, tags)

    def on_gcode_received(self, comm_instance: Any, line: str, *args: Any, **kwargs: Any) -> str:
        # every line the printer sends passes here: leave at once unless a confirm waits
        port = self._port
        if port is not None and port.listening:
            port.on_received(line)
        return line

    def _stop_job_for(self, trigger: LayerTrigger, held_line: Optional[str]) -> bool:
        """Stops the job on the comm thread, so no further line of the file goes out."""
        job, port, worker, tracker = self._job, self._port, self._worker, self._tracker
        if job is None or port is None or worker is None or tracker is None:
            return False
        if worker.busy:
            self._logger.warning(
                f"layer {trigger.layer}: the previous capture is still running, skipped"
            )
            return False
        values: lc_settings.CaptureSettings = job["settings"]
        problem = port.stop_job()
        if problem is not None:
            self._logger.warning(f"layer {trigger.layer}: {problem}, skipped")
            return False
        if values.stop_mode == "pause":
            # OctoPrint runs beforePrintResumed on every resume, ours or the user's: the
            # held line rides on it (see on_gcode_script), after the user's resume script
            self._owed_line, held_line = held_line, None
        worker.submit(
            CaptureRequest(
                trigger=trigger,
                motion=trigger.state_before or tracker.state,
                held_line=held_line,
                settings=values,
                bounds=job["bounds"],
                print_info=job["print_info"],
                store_root=job["store_root"],
            )
        )
        return True

    def _on_sequence_finished(self, request: CaptureRequest, result: SequenceResult) -> None:
        port = self._port
        interrupted = result.outcome == OUTCOME_INTERRUPTED
        if port is not None:
            port.release(result.continued, interrupted)
        if request.held_line and not result.held_line_sent and not interrupted:
            self._owed_line = request.held_line
        if not result.continued and not interrupted:
            self._logger.warning(
                f"layer {request.trigger.layer}: the job was left paused ({result.outcome}); "
                "it continues when you resume it"
            )

    def on_gcode_script(
        self, comm_instance: Any, script_type: str, script_name: str, *args: Any, **kwargs: Any
    ) -> Any:
        if script_type != "gcode" or script_name != "beforePrintResumed":
            return None
        owed, self._owed_line = self._owed_line, None
        if owed is None:
            return None
        return None, [owed], None, {PLUGIN_TAG}

    def _job_port(self) -> OctoPrintPrinterPort:
        port = self._port
        if port is None:
            raise RuntimeError("no print job is armed")
        return port

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
        tracker, job = self._tracker, self._job
        if tracker is None or job is None:
            return None
        pending = tracker.pending_z_heights()
        return self._live_status.set_progress(
            tracker.layer,
            next_every_n(
                tracker.layer, job["settings"].capture_every_n_layers, tracker.captured_layers()
            ),
            pending[0] if pending else None,
        )

    def _send_status(self, snapshot: Dict[str, Any]) -> None:
        self._plugin_manager.send_plugin_message(
            self._identifier, {"type": "status", "status": snapshot}
        )

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
            self._reject([lc_settings.SettingsError("settings", "expected an object")])
            return {}
        current = self._settings.get_all_data(merged=True) or {}
        candidate = {key: current.get(key) for key in lc_settings.DEFAULTS}
        candidate.update(data)
        try:
            values = lc_settings.validate(candidate, self._profile_bounds())
        except lc_settings.InvalidSettings as exc:
            self._reject(exc.errors)
            return {}
        self._last_settings_errors = []
        cleaned = lc_settings.to_storable(values)
        changed = {key: cleaned[key] for key in data if key in cleaned}
        return octoprint.plugin.SettingsPlugin.on_settings_save(self, changed)

    def _reject(self, errors: List[lc_settings.SettingsError]) -> None:
        self._last_settings_errors = [{"key": e.key, "message": e.message} for e in errors]
        self._logger.warning(
            "Refused invalid Layer Capture settings, nothing saved: "
            + "; ".join(str(e) for e in errors)
        )
        self._plugin_manager.send_plugin_message(
            self._identifier,
            {"type": "settings_rejected", "errors": self._last_settings_errors},
        )

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
            "js": ["js/layercapture_settings.js", "js/layercapture_tab.js"],
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
            errors = api.settings_errors(exc)
            return flask.make_response(
                flask.jsonify(errors=errors, preview=preview, estimate=None), 400
            )
        measured_s, measured_layers = self._live_status.measured()
        planned = plan_layer_time(values, values.bounds(profile_bounds))
        estimate = {
            "planned_s": planned.total_s,
            "planned_parts": planned.parts(),
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
        try:
            values = camera_test_settings(flask.request.get_json(silent=True), saved)
        except lc_settings.InvalidSettings as exc:
            errors = [{"key": e.key, "message": e.message} for e in exc.errors]
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
        return file_routes(self._gallery_index)

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
    "octoprint.access.permissions": __plugin_implementation__.get_additional_permissions,
    "octoprint.server.http.routes": __plugin_implementation__.route_hook,
    "octoprint.plugin.softwareupdate.check_config": (
        __plugin_implementation__.get_update_information
    ),
}
