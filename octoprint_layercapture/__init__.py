"""OctoPrint-LayerCapture: photographs a print at chosen layers from a grid of positions.

The plugin class only wires OctoPrint to the package: its hooks and events go to the
armed print's :class:`session.CaptureSession` (one reference, swapped as a whole), its
routes to :class:`web.endpoints.Endpoints`. Everything that decides lives in plain
modules that import nothing from OctoPrint (see docs/architecture.md).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import octoprint.plugin
from flask_babel import gettext
from octoprint.access.permissions import Permissions
from octoprint.events import Events

from . import session as sessions
from . import settings as lc_settings
from .analysis.events import EVENT_NAME, LAYER_CAPTURED, layer_event
from .analysis.mosaic.layer import options_from
from .analysis.mosaic.worker import MosaicWorker
from .analysis.records import PROCESS_CODES, ProcessState
from .analysis.video.jobs import IndexGallery, RenderGate
from .analysis.video.renderer import VideoRenderer
from .calibration import PluginCalibration
from .cameras import probe
from .cameras.sources import cameras_for
from .cameras.webcams import OctoPrintWebcams
from .capture.firmware import ConnectedFirmware
from .capture.printer_port import PARKED_AT_COMMAND, PLUGIN_TAG, plugin_tags
from .capture.results import SequenceResult
from .capture.status import LiveStatus
from .capture.worker import CaptureRequest, CaptureWorker
from .settings_reader import SettingsReader
from .store.index import CaptureIndex
from .vocabulary import State
from .web.downloads import ZipDownloads
from .web.endpoints import Endpoints
from .web.files import file_routes
from .web.permissions import additional_permissions, update_information
from .web.push import Pushes
from .web.routes import FILE_EVENTS, Routes

__plugin_name__ = "Layer Capture"
__plugin_pythoncompat__ = ">=3.9,<4"

PRINT_ENDS = (Events.PRINT_DONE, Events.PRINT_FAILED, Events.PRINT_CANCELLED)


class LayerCapturePlugin(
    Routes,
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
        # the armed print: replaced as a whole, so OctoPrint's threads see one or the other
        self._session: Optional[sessions.CaptureSession] = None
        self._prints = sessions.PrintCounter()
        self._firmware = ConnectedFirmware()
        self._live_status = LiveStatus()
        self._index = CaptureIndex()
        self._zips = ZipDownloads()
        self._webcams = OctoPrintWebcams()
        # factors, fan and tool as sent since the printer connected, from any source
        self._process = ProcessState()

    def initialize(self) -> None:
        self._reader = SettingsReader(
            self._settings, self._printer_profile_manager.get_current_or_default
        )
        self._pushes = Pushes(self._plugin_manager, self._identifier, self._logger)
        self._worker = CaptureWorker(
            make_printer=lambda: sessions.port_of(self._session),
            make_cameras=lambda request, plan: cameras_for(request, plan, self._webcams.find),
            on_status=self._publish_status,
            on_finished=self._on_sequence_finished,
            plugin_version=str(self._plugin_version),
            logger=self._logger,
            on_layer_saved=self._on_layer_saved,
            on_busy=lambda: self._videos.hold_now(),  # no ffmpeg while the head moves
            on_idle=lambda: self._videos.wake(),
        )
        self._videos = VideoRenderer(
            gallery=IndexGallery(lambda: self._web.gallery()),
            config=self._reader.render_config,
            work_root=Path(self.get_plugin_data_folder()),
            may_render=RenderGate(
                capturing=lambda: self._worker.busy,
                printing=lambda: sessions.job_active(self._printer),
                while_printing=lambda: self._reader.flag("video_render_while_printing"),
            ).reason,
            on_update=self._pushes.video,
            logger=self._logger,
            plugin_version=str(self._plugin_version),
        )
        self._mosaics = MosaicWorker(
            lambda: options_from(self._reader.current()),
            self._worker.wait_idle,
            self._index.add_metadata_file,
            self._pushes.mosaic,
            self._logger,
        )
        calibrate = (self._printer, self._reader, self._webcams, self._worker, self._pushes)
        self._calibration = PluginCalibration(*calibrate, self._logger)
        self.serve(
            Endpoints(
                reader=self._reader,
                index=self._index,
                live_status=self._live_status,
                session=lambda: self._session,
                zips=self._zips,
                capturing=lambda: self._worker.busy,
                webcams=self._webcams,
                pushes=self._pushes,
                may_change_settings=lambda: bool(Permissions.SETTINGS.can()),
                motion_limits=lambda: sessions.motion_limits(self._reader, self._firmware),
                videos=self._videos,
                calibration=self._calibration,
            )
        )

    ##~~ StartupPlugin, ShutdownPlugin

    def on_after_startup(self) -> None:
        self._pushes.start()
        self._worker.start()
        self._mosaics.start()
        self._videos.start()
        self._web.build_gallery_later()
        try:
            values = self._reader.current()
        except lc_settings.InvalidSettings as exc:
            self._logger.warning(f"Stored settings are invalid, captures are off: {exc}")
            return
        self._logger.info(
            f"Layer Capture ready: {'enabled' if values.enabled else 'disabled'}, "
            f"{values.grid_size}x{values.grid_size} grid, stop mode {values.stop_mode}"
        )

    def _on_layer_saved(self, path: Path) -> None:
        """The image writer's thread, once a layer's files are all written."""
        self._index.add_metadata_file(path)
        self._mosaics.submit(path)  # a toolhead camera's layer: stitched once the head is back
        payload = layer_event(path, self._reader.uploads())
        if payload is not None:  # registered at start-up (register_custom_events)
            event = getattr(Events, "PLUGIN_LAYERCAPTURE_LAYER_CAPTURED", EVENT_NAME)
            self._event_bus.fire(event, payload)

    def on_shutdown(self) -> None:
        session = self._session
        if session is not None:
            session.port.interrupt("shutdown")
        self._videos.stop()
        self._calibration.calibrator.stop()
        self._worker.stop()
        self._mosaics.stop()
        self._zips.close()
        self._pushes.stop()

    ##~~ EventHandlerPlugin

    def on_event(self, event: str, payload: Optional[Dict[str, Any]]) -> None:
        payload = payload or {}
        session = self._session
        if event == Events.PRINT_STARTED:
            self._prints.event()  # (armed in the scripts hook, before the first line)
        elif event == Events.FIRMWARE_DATA:
            self._on_firmware_data(payload)
        elif event in FILE_EVENTS:
            self._web.follow_file_change(payload)
        elif event == Events.CONNECTED:
            self._process = ProcessState()  # the firmware starts from its defaults
        elif event in (Events.DISCONNECTING, Events.DISCONNECTED, Events.ERROR):
            self._firmware.forget()
            self._calibration.calibrator.interrupt("disconnected")
            if session is not None:
                session.port.interrupt("disconnected")
            self._disarm(event)
        elif session is None or not self._prints.is_current(session):
            return  # an event of an earlier print, arriving late
        elif event in (*PRINT_ENDS, Events.PRINT_CANCELLING):
            if event != Events.PRINT_DONE:
                session.port.interrupt("cancelled" if "Cancel" in event else "print failed")
            # (a cancel disarms at PrintCancelling: PrintCancelled finds no session)
            sessions.render_after_print(session, self._reader, self._worker, self._videos)
            self._disarm(event)
        elif event == Events.PRINT_PAUSED:
            session.port.on_paused(payload)
        elif event == Events.PRINT_RESUMED:
            session.port.on_resumed(payload)
        elif event == Events.PRINTER_STATE_CHANGED:
            session.port.on_state_changed(payload.get("state_id"))
        elif event == Events.Z_CHANGE:
            # ZChange fires for z-hops and our own moves too, so it only feeds the status;
            # layers are decided from the extruding moves in the queuing hook.
            self._live_status.update({"z": payload.get("new")})
            snapshot = self._refresh_progress()
            if snapshot is not None:
                self._pushes.status(snapshot)

    def _arm(self, job_file: Dict[str, Any], number: int) -> None:
        self._disarm("PrintStarted")
        armed = sessions.arm(
            job_file,
            number,
            self._reader,
            self._firmware,
            self._printer,
            self._logger,
            files=self._file_manager,
            process=self._process,
        )
        if isinstance(armed, sessions.NotCaptured):
            if armed.status is not None:
                self._publish_status(armed.status)
            return
        self._live_status.begin_print(
            armed.armed.print_info.gcode_file, sessions.planned_seconds(armed)
        )
        self._session = armed
        self._publish_status({"state": State.WAITING, "layer": 0})

    def _disarm(self, reason: str) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        if session.tracker.vase_mode:
            self._logger.warning("Spiral vase mode detected: layers were not captured")
        self._publish_status({"state": State.IDLE, "reason": reason})

    def _on_firmware_data(self, payload: Dict[str, Any]) -> None:
        setting = self._reader.firmware_setting()
        queries = self._firmware.introduced(payload.get("name"), setting, time.monotonic())
        self._logger.info(self._firmware.describe(setting))
        if queries:
            self._printer.commands(queries, tags=plugin_tags("layercapture:soft-limits"))

    ##~~ G-code hooks (OctoPrint's comm and send threads: keep them cheap)

    def on_gcode_queuing(
        self,
        comm: Any,
        phase: str,
        cmd: str,
        cmd_type: Any,
        gcode: Optional[str],
        subcode: Any = None,
        tags: Optional[Set[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if gcode in PROCESS_CODES and (not tags or PLUGIN_TAG not in tags):
            self._process.feed(gcode, cmd)  # M220/M221/M106/M107/T from any source
        session = self._session
        if session is None or not tags:
            return None
        if "source:file" not in tags:
            if "script:afterPrintPaused" in tags and PLUGIN_TAG not in tags:
                session.port.on_pause_script_line(cmd, gcode)
            return None
        trigger = session.feed(cmd, tags)
        if trigger is not None and session.stop_for(trigger, cmd, self._worker):
            return (None,)  # the first move of the next layer waits for the capture
        return None

    def on_atcommand_queuing(
        self, comm: Any, phase: str, command: str, parameters: str, *args: Any, **kw: Any
    ) -> None:
        session = self._session
        if session is None or command.upper() != "LAYERCAPTURE":
            return
        trigger = session.feed_marker(parameters or "", kw.get("tags"))
        if trigger is not None:
            session.stop_for(trigger, None, self._worker)

    def on_atcommand_sending(
        self, comm: Any, phase: str, command: str, parameters: str, *args: Any, **kw: Any
    ) -> None:
        session = self._session
        if session is not None and command.upper() == PARKED_AT_COMMAND:
            # OctoPrint's pause report, as its scripts see it (the event comes later)
            position = getattr(comm, "pause_position", None)
            as_dict = getattr(position, "as_dict", None)
            session.port.on_parked(as_dict() if callable(as_dict) else None)

    def on_gcode_sending(self, comm: Any, phase: str, cmd: str, *args: Any, **kwargs: Any) -> None:
        # (cmd_type, gcode, subcode=, tags=), as OctoPrint passes them to every G-code hook
        for port in self._calibration.ports(self._session):
            if port.watching_sends:
                port.on_sending(
                    args[1] if len(args) > 1 else kwargs.get("gcode"), kwargs.get("tags")
                )

    def on_gcode_received(self, comm: Any, line: str, *args: Any, **kwargs: Any) -> str:
        # every line the printer sends passes here: leave at once unless something waits
        for port in self._calibration.ports(self._session):
            if port.listening:
                port.on_received(line)
        if self._firmware.listening:
            learnt = self._firmware.feed(line, time.monotonic())
            if learnt is not None:
                self._logger.info(learnt)
        return line

    def on_gcode_script(self, comm: Any, script_type: str, name: str, *args: Any, **kw: Any) -> Any:
        if script_type != "gcode":
            return None
        if name == "beforePrintStarted":
            # OctoPrint is starting a job and has not sent a line of it yet
            self._calibration.calibrator.interrupt("a print started")
            self._arm(sessions.job_file(self._printer, self._logger), self._prints.start())
            return None
        session = self._session
        return None if session is None else session.script_lines(name, {PLUGIN_TAG})

    ##~~ the capture worker's callbacks

    def _on_sequence_finished(self, request: CaptureRequest, result: SequenceResult) -> None:
        sessions.sequence_finished(self._session, request, result)

    def _publish_status(self, update: Dict[str, Any]) -> None:
        self._refresh_progress()
        self._pushes.status(self._live_status.update(update))

    def _refresh_progress(self) -> Optional[Dict[str, Any]]:
        """The layer being printed and the next targets; the new status when they changed."""
        session = self._session
        if session is None:
            return None
        return self._live_status.set_progress(*sessions.next_targets(session))

    def on_socket_emit(
        self, socket: Any, user: Any, message: str, payload: Any, *args: Any, **kwargs: Any
    ) -> bool:
        return self._pushes.allows(user, message, payload)

    ##~~ SettingsPlugin

    def get_settings_defaults(self) -> Dict[str, Any]:
        return copy.deepcopy(lc_settings.DEFAULTS)

    def get_settings_restricted_paths(self) -> Dict[Any, List[List[str]]]:
        # camera URLs may carry credentials: only for users who may change settings
        return {Permissions.SETTINGS: [[key] for key in lc_settings.CAMERA_URL_KEYS]}

    def get_settings_version(self) -> int:
        return lc_settings.SETTINGS_VERSION

    def on_settings_migrate(self, target: int, current: Optional[int]) -> None:
        if (current is None or current < target) and self._reader.migrate(current):
            self._logger.info(f"Migrated settings from version {current} to {target}")

    def on_settings_save(self, data: Dict[str, Any]) -> Dict[str, Any]:
        changed = self._web.settings_to_save(data)  # None: refused, nothing saved
        if changed is None:
            return {}
        saved: Dict[str, Any] = octoprint.plugin.SettingsPlugin.on_settings_save(self, changed)
        return saved

    ##~~ TemplatePlugin, AssetPlugin

    def get_template_vars(self) -> Dict[str, Any]:
        return {"camera_test_keys": list(probe.TEST_KEYS)}

    def get_template_configs(self) -> List[Dict[str, Any]]:
        return [
            {"type": "settings", "custom_bindings": True},
            {"type": "tab", "name": gettext("Layer Capture"), "custom_bindings": True},
        ]

    def is_template_autoescaped(self) -> bool:
        return True

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

    ##~~ hooks: large-file routes, permissions, custom events, software update

    def route_hook(self, server_routes: Any, *args: Any, **kwargs: Any) -> List[Any]:
        version = str(self._plugin_version)
        return file_routes(self._web.gallery, self._zips, self._web.capturing, version)

    def get_additional_permissions(self, *args: Any, **kwargs: Any) -> List[Dict[str, Any]]:
        return additional_permissions(gettext)

    def register_custom_events(self, *args: Any, **kwargs: Any) -> List[str]:
        """``Events.PLUGIN_LAYERCAPTURE_LAYER_CAPTURED`` (see analysis.events)."""
        return [LAYER_CAPTURED]

    def get_update_information(self) -> Dict[str, Any]:
        return update_information(__plugin_name__, str(self._plugin_version))


__plugin_implementation__ = LayerCapturePlugin()

__plugin_hooks__ = {
    "octoprint.comm.protocol.gcode.queuing": __plugin_implementation__.on_gcode_queuing,
    "octoprint.comm.protocol.gcode.sending": __plugin_implementation__.on_gcode_sending,
    "octoprint.comm.protocol.gcode.received": __plugin_implementation__.on_gcode_received,
    "octoprint.comm.protocol.scripts": __plugin_implementation__.on_gcode_script,
    "octoprint.comm.protocol.atcommand.queuing": __plugin_implementation__.on_atcommand_queuing,
    "octoprint.comm.protocol.atcommand.sending": __plugin_implementation__.on_atcommand_sending,
    "octoprint.access.permissions": __plugin_implementation__.get_additional_permissions,
    "octoprint.server.http.routes": __plugin_implementation__.route_hook,
    "octoprint.server.sockjs.emit": __plugin_implementation__.on_socket_emit,
    "octoprint.events.register_custom_events": __plugin_implementation__.register_custom_events,
    "octoprint.plugin.softwareupdate.check_config": (
        __plugin_implementation__.get_update_information
    ),
}
