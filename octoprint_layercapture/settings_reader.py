"""The plugin's settings as OctoPrint stores them, read the same way everywhere.

An adapter: it talks to OctoPrint's settings object and printer profile manager (duck
typed, nothing imported from OctoPrint) and hands out plain values and
:class:`settings.CaptureSettings`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import settings as lc_settings
from .analysis.video.jobs import RenderConfig
from .capture.estimate import profile_feedrates
from .capture.profile import bounds_from_profile
from .store.files import resolve_inside

_logger = logging.getLogger("octoprint.plugins.layercapture.settings")


class SettingsReader:
    def __init__(self, settings: Any, current_profile: Callable[[], Any]) -> None:
        self._settings = settings
        self._current_profile = current_profile

    def stored(self) -> Dict[str, Any]:
        """Every setting's stored value (defaults where none is stored)."""
        data = self._settings.get_all_data(merged=True) or {}
        return {key: data.get(key, lc_settings.DEFAULTS[key]) for key in lc_settings.DEFAULTS}

    def migrate(self, version: Optional[int]) -> bool:
        """Stored settings of an earlier version brought up to date; whether any changed."""
        stored = self._settings.get_all_data(merged=False, incl_defaults=False) or {}
        unused: List[str] = []
        migrated = lc_settings.migrate(stored, version, unused)
        if unused:
            _logger.info(
                f"Settings migration: {', '.join(unused)} had no effect (another camera "
                "setting came first) and are no longer stored"
            )
        for key in set(stored) - set(migrated):
            self._settings.remove([key])
        for key, value in migrated.items():
            if key in lc_settings.DEFAULTS:
                self._settings.set([key], value)
        return bool(migrated != stored)

    def with_form(self, form: Mapping[str, Any]) -> Dict[str, Any]:
        return lc_settings.merge_form(self.stored(), form)

    def profile(self) -> Optional[Mapping[str, Any]]:
        """The active printer profile (None when it cannot be read)."""
        try:
            profile = self._current_profile()
        except Exception:
            _logger.exception("Could not read the active printer profile")
            return None
        return profile if isinstance(profile, Mapping) else None

    def profile_bounds(self) -> Optional[lc_settings.Bounds]:
        return bounds_from_profile(self.profile())

    def profile_feedrates(self) -> Optional[Dict[str, float]]:
        """The active printer profile's axis speeds (mm/s), or None when unknown."""
        return profile_feedrates(self.profile())

    def current(self) -> lc_settings.CaptureSettings:
        """The stored settings, validated (raises :class:`settings.InvalidSettings`)."""
        return lc_settings.validate(self.stored(), self.profile_bounds())

    def firmware_setting(self) -> str:
        """The ``firmware`` setting, its default while the stored settings are invalid."""
        try:
            return self.current().firmware
        except lc_settings.InvalidSettings:
            return str(lc_settings.DEFAULTS["firmware"])

    def uploads(self) -> Path:
        return Path(self._settings.global_get_basefolder("uploads"))

    def capture_root(self, folder: Optional[str] = None) -> Path:
        """The capture folder (``folder``, or the stored one) inside OctoPrint's uploads;
        the default folder when that is not usable."""
        uploads = self.uploads()
        name = (
            folder
            or self._settings.get(["capture_folder"])
            or lc_settings.DEFAULTS["capture_folder"]
        )
        try:
            return resolve_inside(uploads, str(name))
        except ValueError:
            _logger.warning(f"capture_folder {name!r} is not usable, using the default")
            return uploads / str(lc_settings.DEFAULTS["capture_folder"])

    def pause_reports_position(self) -> bool:
        """Whether OctoPrint measures the head on pausing (``serial.logPositionOnPause``)."""
        return bool(self._settings.global_get_boolean(["serial", "logPositionOnPause"]))

    def lines_checked(self) -> bool:
        """Whether a line of the plugin can neither be lost nor be refused without OctoPrint
        stopping: OctoPrint checksums lines while a job prints (``serial.neverSendChecksum``
        off) and disconnects on a firmware error (``serial.disconnectOnErrors`` on,
        ``serial.ignoreErrorsFromFirmware`` off), before the printer's ``ok`` lets the
        next line go."""

        def flag(name: str) -> bool:
            return bool(self._settings.global_get_boolean(["serial", name]))

        return (
            not flag("neverSendChecksum")
            and flag("disconnectOnErrors")
            and not flag("ignoreErrorsFromFirmware")
        )

    def flag(self, key: str) -> bool:
        """One boolean setting as stored (cheap: no validation of the rest)."""
        return bool(self._settings.get_boolean([key]))

    def video_fps(self) -> int:
        return int(self._settings.get_int(["video_fps"]) or lc_settings.DEFAULTS["video_fps"])

    def video_hold_seconds(self) -> float:
        return float(self._settings.get_float(["video_hold_seconds"]) or 0.0)

    def render_config(self) -> RenderConfig:
        """What a video is made with: OctoPrint's ffmpeg (``webcam.ffmpeg``) and its
        timelapse bitrate and threads, the plugin's frame rate and held last frame."""
        return RenderConfig(
            ffmpeg=self._settings.global_get(["webcam", "ffmpeg"]),
            bitrate=self._settings.global_get(["webcam", "bitrate"]),
            threads=self._settings.global_get(["webcam", "ffmpegThreads"]),
            fps=self.video_fps(),
            hold_seconds=self.video_hold_seconds(),
        )
