"""OctoPrint's webcams (its webcam providers, 1.9+), as the plugin's cameras see them.

An adapter: ``octoprint.webcams`` is imported where it is used, so the rest of the package
stays importable without OctoPrint.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from .sources import WebcamInfo, webcam_info

_logger = logging.getLogger("octoprint.plugins.layercapture.cameras")


class OctoPrintWebcams:
    def all(self) -> List[WebcamInfo]:
        import octoprint.webcams

        try:
            provided = octoprint.webcams.get_webcams()
            default = octoprint.webcams.get_snapshot_webcam()
            default_name = default.config.name if default is not None else None
            return [webcam_info(webcam, default_name) for webcam in provided.values()]
        except Exception:
            _logger.exception("Could not look up OctoPrint's webcams")
            return []

    def find(self, name: str) -> Optional[WebcamInfo]:
        """The webcam called ``name``; "" is OctoPrint's snapshot webcam."""
        for webcam in self.all():
            if (webcam.name == name) if name else webcam.is_snapshot_webcam:
                return webcam
        return None
