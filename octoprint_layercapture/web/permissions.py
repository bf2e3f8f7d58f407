"""The plugin's own permissions (the ``octoprint.access.permissions`` hook)."""

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
