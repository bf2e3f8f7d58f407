"""The plugin's pushes to the browser, to exactly the users allowed to read them.

OctoPrint sends plugin messages and events to every user with its Status permission, and
delivers what it held back for a socket that had not logged in yet unchecked at login; the
``octoprint.server.sockjs.emit`` hook (:meth:`Pushes.allows`) filters both, for the
plugin's messages and its layer event (``analysis.events``) alike.

Once started, pushes go out from their own thread, in order: OctoPrint hands a plugin
message to every socket before it returns, and the capture sequence reports its progress
while the head is away, where it must not wait for browsers.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Dict, Optional

from ..analysis.events import EVENT_NAME

STATUS = "status"
VIDEO = "video"  # a video render's state and progress (analysis.video)
SETTINGS_REJECTED = "settings_rejected"


def permission_name(kind: Any) -> str:
    """The OctoPrint permission that may read a message of this kind: Settings for
    rejected settings, *View captures* for the rest (status, video, the layer event)."""
    return "SETTINGS" if kind == SETTINGS_REJECTED else "PLUGIN_LAYERCAPTURE_VIEW"


def _permission(kind: Any) -> Any:
    # looked up when used: the plugin's own permissions are registered after start-up
    from octoprint.access.permissions import Permissions

    return getattr(Permissions, permission_name(kind))


class Pushes:
    def __init__(self, plugin_manager: Any, identifier: str, logger: logging.Logger) -> None:
        self._plugin_manager = plugin_manager
        self._identifier = identifier
        self._logger = logger
        self._queue: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="layercapture-push", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def send(self, data: Dict[str, Any]) -> None:
        if self._thread is not None:
            self._queue.put(data)
        else:
            self._deliver(data)

    def _deliver(self, data: Dict[str, Any]) -> None:
        self._plugin_manager.send_plugin_message(
            self._identifier, data, permissions=[_permission(data.get("type"))]
        )

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                self._deliver(data)
            except Exception:
                self._logger.exception("Could not push %s to the browsers", data.get("type"))

    def status(self, snapshot: Dict[str, Any]) -> None:
        self.send({"type": STATUS, "status": snapshot})

    def video(self, job: Dict[str, Any]) -> None:
        self.send({"type": VIDEO, "job": job})

    def allows(self, user: Any, message: str, payload: Any) -> bool:
        """The sockjs emit hook: our messages only to users with the permission of their
        type, our layer event only to users with View captures; everything else passes."""
        if message == "event" and isinstance(payload, dict) and payload.get("type") == EVENT_NAME:
            return bool(user and user.has_permission(_permission(STATUS)))
        if message != "plugin" or not isinstance(payload, dict):
            return True
        if payload.get("plugin") != self._identifier:
            return True
        data = payload.get("data")
        kind = data.get("type") if isinstance(data, dict) else None
        return bool(user and user.has_permission(_permission(kind)))
