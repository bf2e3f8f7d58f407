"""OctoPrint-LayerCapture: photographs a print at chosen layers from a grid of positions.

The plugin class only wires OctoPrint to the plain modules of this package, which
import nothing from OctoPrint.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import flask
import octoprint.plugin
from flask_babel import gettext
from octoprint.access.permissions import ADMIN_GROUP, Permissions

from . import settings as lc_settings

__plugin_name__ = "Layer Capture"
__plugin_pythoncompat__ = ">=3.9,<4"


class LayerCapturePlugin(
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

    ##~~ StartupPlugin mixin

    def on_after_startup(self) -> None:
        try:
            values = self._current_settings()
        except lc_settings.InvalidSettings as exc:
            self._logger.warning(f"Stored settings are invalid, captures are off: {exc}")
            return
        self._logger.info(
            f"Layer Capture ready: {'enabled' if values.enabled else 'disabled'}, "
            f"{values.grid_size}x{values.grid_size} grid, stop mode {values.stop_mode}"
        )

    ##~~ ShutdownPlugin mixin

    def on_shutdown(self) -> None:
        pass

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
            "js": ["js/layercapture.js"],
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
        try:
            lc_settings.validate(candidate, self._profile_bounds())
        except lc_settings.InvalidSettings as exc:
            errors = [{"key": e.key, "message": e.message} for e in exc.errors]
            return flask.make_response(flask.jsonify(errors=errors), 400)
        return flask.jsonify(errors=[])

    @octoprint.plugin.BlueprintPlugin.route("/status", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def get_status(self) -> Any:
        return flask.jsonify(state="idle", settings_errors=self._last_settings_errors)

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
    "octoprint.access.permissions": __plugin_implementation__.get_additional_permissions,
    "octoprint.plugin.softwareupdate.check_config": (
        __plugin_implementation__.get_update_information
    ),
}
