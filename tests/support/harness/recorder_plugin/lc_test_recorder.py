"""Test-only OctoPrint plugin: records what the printer was sent.

The integration harness copies this file into ``BASEDIR/plugins/``. It appends one JSON
object per line to ``BASEDIR/lc_sent.jsonl`` (or the path in ``LC_TEST_RECORDER_FILE``):

* ``{"type": "sent", "t": <monotonic>, "line": "G1 X10", "gcode": "G1", "tags": [...]}``
  for every line OctoPrint sent to the printer (the ``gcode.sent`` hook), and
* ``{"type": "position", "t": <monotonic>, "payload": {...}}`` for every
  ``PositionUpdate`` event (one per M114 reply), and
* ``{"type": "received", "t": <monotonic>, "line": "ok"}`` for every line the printer
  sent (the ``gcode.received`` hook), only when ``LC_TEST_RECORD_RECEIVED`` is set, and
* ``{"type": "after_startup", "t": <monotonic>}`` once its ``on_after_startup`` ran. It
  sorts after ``layercapture`` (no sorting key, identifiers compared), so the record
  means the plugin under test finished its ``on_after_startup`` too.

It also sends plugin messages to *every* push-API client (no permission needed), so a test
can tell when a socket is ready and when earlier pushes have gone out to every socket:

* ``{"type": "client_authed", "username": ...}`` on each ``ClientAuthed`` event (a socket
  logged in; users without OctoPrint's Status permission get no other sign of that);
* ``{"type": "barrier", "token": ...}`` on ``POST /api/plugin/lc_test_recorder``
  ``{"command": "barrier", "token": ...}`` (admins only).

``t`` is ``time.monotonic()``; on Linux that clock is system-wide, so it compares with
the test process's own monotonic timestamps.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Dict, Optional, TextIO

import flask
import octoprint.plugin
from octoprint.access.permissions import Permissions
from octoprint.events import Events

__plugin_name__ = "Layer Capture test recorder"
__plugin_version__ = "1.0.0"
__plugin_description__ = "Test-only: records sent G-code lines and position reports"
__plugin_pythoncompat__ = ">=3.9,<4"

RECORD_FILE_ENV = "LC_TEST_RECORDER_FILE"
RECORD_RECEIVED_ENV = "LC_TEST_RECORD_RECEIVED"
RECORD_FILE_NAME = "lc_sent.jsonl"
AFTER_STARTUP_LINE = "lc_test_recorder: on_after_startup done"


class LayerCaptureTestRecorder(
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.EventHandlerPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.SimpleApiPlugin,
):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._file: Optional[TextIO] = None

    def initialize(self) -> None:
        path = os.environ.get(RECORD_FILE_ENV) or os.path.join(
            self._settings.global_get_basefolder("base"), RECORD_FILE_NAME
        )
        # line-buffered: every record reaches the file as soon as it is written
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._logger.info(f"Recording sent lines to {path}")

    def _write(self, record: Dict[str, Any]) -> None:
        text = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(text)

    def on_after_startup(self) -> None:
        self._write({"type": "after_startup", "t": time.monotonic()})
        # the harness waits for this line: the log is written asynchronously, in order
        self._logger.info(AFTER_STARTUP_LINE)

    def on_shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def on_gcode_sent(
        self,
        comm_instance: Any,
        phase: str,
        cmd: str,
        cmd_type: Optional[str],
        gcode: Optional[str],
        subcode: Optional[str] = None,
        tags: Optional[set] = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self._write(
            {
                "type": "sent",
                "t": time.monotonic(),
                "line": cmd,
                "gcode": gcode,
                "tags": sorted(tags) if tags else [],
            }
        )

    def on_gcode_received(self, comm_instance: Any, line: str, *args: Any, **kwargs: Any) -> str:
        if line and line.strip():
            self._write({"type": "received", "t": time.monotonic(), "line": line.strip()})
        return line

    def on_event(self, event: str, payload: Optional[Dict[str, Any]]) -> None:
        if event == Events.POSITION_UPDATE:
            self._write({"type": "position", "t": time.monotonic(), "payload": payload or {}})
        elif event == Events.CLIENT_AUTHED:
            self._broadcast({"type": "client_authed", "username": (payload or {}).get("username")})

    def _broadcast(self, data: Dict[str, Any]) -> None:
        # permissions=[]: every socket, anonymous ones too (the default needs Status)
        self._plugin_manager.send_plugin_message(self._identifier, data, permissions=[])

    def is_api_protected(self) -> bool:
        return True

    def get_api_commands(self) -> Dict[str, Any]:
        return {"barrier": ["token"]}

    def on_api_command(self, command: str, data: Dict[str, Any]) -> Any:
        if not Permissions.ADMIN.can():
            flask.abort(403)
        self._broadcast({"type": "barrier", "token": str(data["token"])})
        return flask.make_response("", 204)


__plugin_implementation__ = LayerCaptureTestRecorder()
__plugin_hooks__ = {
    "octoprint.comm.protocol.gcode.sent": __plugin_implementation__.on_gcode_sent,
}
if os.environ.get(RECORD_RECEIVED_ENV):
    __plugin_hooks__["octoprint.comm.protocol.gcode.received"] = (
        __plugin_implementation__.on_gcode_received
    )
