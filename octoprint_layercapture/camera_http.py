"""A camera behind a snapshot URL: mjpg-streamer ``?action=snapshot``, ustreamer and
camera-streamer ``/snapshot``, IP cameras.

One ``requests.Session`` per camera keeps the connection alive between the grid positions
of a layer. Each attempt gets connect and read timeouts equal to what is left of the
camera's timeout, and the body must be a whole JPEG: an HTML login or error page with
status 200 is a failure, not an image.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Tuple

import requests

from .camera_base import (
    MAX_IMAGE_BYTES,
    USER_AGENT,
    RealCamera,
    check_jpeg,
    explain_io_error,
    http_error,
    redact_url,
)
from .ports import CameraError

_CHUNK = 64 * 1024


class SnapshotUrlCamera(RealCamera):
    def __init__(
        self,
        url: str,
        timeout: float,
        retries: int,
        session_factory: Callable[[], requests.Session] = requests.Session,
        **kwargs: Any,
    ) -> None:
        super().__init__(f"snapshot URL {redact_url(url)}", timeout, retries, **kwargs)
        self.url = url
        self._session = session_factory()
        self._session.headers.update(
            {"User-Agent": USER_AGENT, "Accept": "image/jpeg, image/*;q=0.8, */*;q=0.1"}
        )
        self._lock = threading.Lock()
        self._response: Optional[requests.Response] = None

    def fetch(self, deadline: float) -> Tuple[bytes, str]:
        left = self.remaining(deadline)
        try:
            response = self._session.get(self.url, timeout=(left, left), stream=True)
        except requests.RequestException as exc:
            raise CameraError(explain_io_error(exc, self.label, self.timeout)) from exc
        with self._lock:
            self._response = response
        try:
            return self._read(response, deadline)
        finally:
            with self._lock:
                self._response = None
            response.close()

    def _read(self, response: requests.Response, deadline: float) -> Tuple[bytes, str]:
        content_type = response.headers.get("Content-Type")
        if response.status_code != 200:
            raise http_error(self.label, response.status_code, response.reason)
        body = bytearray()
        try:
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > MAX_IMAGE_BYTES:
                    raise CameraError(
                        f"{self.label}: answer larger than {MAX_IMAGE_BYTES // 2**20} MB"
                    )
                self.remaining(deadline)
        except requests.RequestException as exc:
            raise CameraError(explain_io_error(exc, self.label, self.timeout)) from exc
        check_jpeg(body, self.label, content_type)
        return bytes(body), "image/jpeg"

    def abort(self) -> None:
        with self._lock:
            response = self._response
        if response is not None:
            response.close()

    def close(self) -> None:
        super().close()
        self.abort()
        self._session.close()
