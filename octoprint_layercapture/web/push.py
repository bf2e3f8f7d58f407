"""The plugin's pushes to the browser, to exactly the users allowed to read them.

OctoPrint sends plugin messages to every user with its Status permission, and delivers
what it held back for a socket that had not logged in yet unchecked at login; the
``octoprint.server.sockjs.emit`` hook (:meth:`Pushes.allows`) filters both.
"""

from __future__ import annotations

from typing import Any, Dict

STATUS = "status"
SETTINGS_REJECTED = "settings_rejected"


def _permission(kind: Any) -> Any:
    # looked up when used: the plugin's own permissions are registered after start-up
    from octoprint.access.permissions import Permissions

    if kind == SETTINGS_REJECTED:
        return Permissions.SETTINGS
    return Permissions.PLUGIN_LAYERCAPTURE_VIEW


class Pushes:
    def __init__(self, plugin_manager: Any, identifier: str) -> None:
        self._plugin_manager = plugin_manager
        self._identifier = identifier

    def send(self, data: Dict[str, Any]) -> None:
        self._plugin_manager.send_plugin_message(
            self._identifier, data, permissions=[_permission(data.get("type"))]
        )

    def status(self, snapshot: Dict[str, Any]) -> None:
        self.send({"type": STATUS, "status": snapshot})

    def allows(self, user: Any, message: str, payload: Any) -> bool:
        """The sockjs emit hook: our messages only to users with the permission of their
        type; everything else passes."""
        if message != "plugin" or not isinstance(payload, dict):
            return True
        if payload.get("plugin") != self._identifier:
            return True
        data = payload.get("data")
        kind = data.get("type") if isinstance(data, dict) else None
        return bool(user and user.has_permission(_permission(kind)))
