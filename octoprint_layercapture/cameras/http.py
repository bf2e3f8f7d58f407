"""A camera behind a snapshot URL: mjpg-streamer ``?action=snapshot``, ustreamer and
camera-streamer ``/snapshot``, IP cameras.

One ``requests.Session`` per camera keeps the connection alive between the grid positions
of a layer. Each attempt gets connect and read timeouts equal to what is left of the
camera's timeout, and the body must be a whole JPEG: an HTML login or error page with
status 200 is a failure, not an image.

Redirects are followed only to the same scheme, host and port (a camera that moves its
snapshot to another path): a redirect elsewhere is not followed, so a camera URL never
leads the OctoPrint host to a service nobody configured.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Tuple
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import requests

from ..capture.ports import CameraError
from .base import (
    MAX_IMAGE_BYTES,
    USER_AGENT,
    PermanentCameraError,
    RealCamera,
    check_jpeg,
    explain_io_error,
    http_error,
    redact_url,
)

_CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts: SplitResult) -> Tuple[str, str, Optional[int]]:
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def same_origin_target(url: str, location: str) -> Optional[str]:
    """Where a redirect from ``url`` to ``location`` leads, when that is the same scheme,
    host and port (keeping the URL's credentials); None for anywhere else."""
    base = urlsplit(url)
    try:
        target = urlsplit(urljoin(url, location))
        if _origin(target) != _origin(base):
            return None
    except ValueError:
        return None
    if base.username is not None and target.username is None:
        # same host, same credentials (urljoin keeps them for relative locations only)
        target = target._replace(netloc=base.netloc)
    return urlunsplit(target)


def _origin_text(url: str, location: str) -> str:
    try:
        parts = urlsplit(urljoin(url, location))
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}" if parts.scheme else "an unreadable address"
    except ValueError:
        return "an unreadable address"


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
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            left = self.remaining(deadline)
            try:
                response = self._session.get(
                    url, timeout=(left, left), stream=True, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise CameraError(explain_io_error(exc, self.label, self.timeout)) from exc
            with self._lock:
                self._response = response
            try:
                if not response.is_redirect:
                    return self._read(response, deadline)
                location = response.headers.get("Location", "")
            finally:
                with self._lock:
                    self._response = None
                response.close()
            target = same_origin_target(url, location)
            if target is None:
                raise PermanentCameraError(
                    f"{self.label}: redirects to another host ({_origin_text(url, location)}), "
                    "which is not followed; use the address it leads to as the URL"
                )
            url = target
        raise PermanentCameraError(f"{self.label}: more than {MAX_REDIRECTS} redirects")

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
