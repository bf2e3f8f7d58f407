"""The plugin's own permissions (the ``octoprint.access.permissions`` hook) and its entry
for the Software Update plugin."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

ADMIN_GROUP = "admins"  # OctoPrint's octoprint.access.ADMIN_GROUP


def additional_permissions(gettext: Callable[[str], str]) -> List[Dict[str, Any]]:
    """*View captures* and *Manage captures*, for the admins group by default."""
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


def update_information(name: str, version: str) -> Dict[str, Any]:
    """The ``octoprint.plugin.softwareupdate.check_config`` entry: GitHub releases."""
    return {
        "layercapture": {
            "displayName": name,
            "displayVersion": version,
            "type": "github_release",
            "user": "octoprint-layercapture",
            "repo": "OctoPrint-LayerCapture",
            "current": version,
            "pip": "https://github.com/octoprint-layercapture/OctoPrint-LayerCapture/"
            "archive/{target_version}.zip",
        }
    }
