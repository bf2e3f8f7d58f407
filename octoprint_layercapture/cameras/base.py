"""What every real camera shares: JPEG checks, error texts, the deadline and the retries.

A camera's :meth:`RealCamera.take` runs each attempt on the camera's own named thread and
stops waiting at ``timeout``, whatever the I/O underneath does: the job is never held
longer than ``(retries + 1) * timeout`` per snapshot. The messages of :class:`CameraError`
are what the metadata, the log and the Test camera button show, word for word; the
README's troubleshooting table lists them.

Pure module (stdlib + Pillow; ``requests`` exceptions are recognised by duck typing).
"""

from __future__ import annotations

import concurrent.futures
import errno
import functools
import http
import http.client
import io
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from PIL import Image, ImageOps

from ..capture.ports import CameraError, ShotRequest, Snapshot

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
MAX_IMAGE_BYTES = 50 * 1024 * 1024
USER_AGENT = "OctoPrint-LayerCapture"
THREAD_NAME = "layercapture-camera"

# Query parameters that IP cameras use for credentials (Foscam ?usr=&pwd=, tokens...).
_SECRET_PARAMS = re.compile(r"^(pass|passwd|password|pwd|token|key|apikey|auth|secret|sig)", re.I)
_USER_PARAMS = re.compile(r"^(user|usr|username|login)$", re.I)

_logger = logging.getLogger("octoprint.plugins.layercapture.cameras")


class PermanentCameraError(CameraError):
    """A failure another attempt cannot fix (HTTP 404, a webcam without snapshots...)."""


class DeadlineExceeded(Exception):
    """The attempt ran past the camera's timeout."""


# HTTP statuses another attempt will not change.
PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 410})


def http_error(label: str, status: int, reason: str = "") -> CameraError:
    """The error for an HTTP answer other than 200 (permanent where retrying is useless).

    The standard phrase of the status is shown, not the one the server sent: nothing a
    server chose to write is quoted (see :func:`check_jpeg`)."""
    kind = PermanentCameraError if status in PERMANENT_HTTP_STATUSES else CameraError
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return kind(f"{label}: HTTP {status} {phrase}".rstrip())


# ---- texts ---------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL without credentials, for names, logs and plugin messages (which every
    connected client receives)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [
                    (k, "***" if _SECRET_PARAMS.match(k) or _USER_PARAMS.match(k) else v)
                    for k, v in pairs
                ],
                safe="*",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<invalid URL>"


def describe_body(data: Union[bytes, bytearray]) -> str:
    """How much came, never what: an answer that is not an image may hold anything the
    camera's host serves (an internal page, a token), and the message reaches the UI."""
    if not data:
        return "an empty body"
    return f"{len(data)} bytes"


_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,40}/[A-Za-z0-9!#$&^_.+-]{1,60}$")


def media_type(content_type: Optional[str]) -> str:
    """The media type of a Content-Type header (``text/html``) for messages; parameters
    and anything that is no media type are left out."""
    if not content_type:
        return "no content type"
    kind = content_type.split(";")[0].strip()
    return kind.lower() if _MEDIA_TYPE.match(kind) else "an unreadable content type"


def looks_like_jpeg(data: Union[bytes, bytearray]) -> bool:
    return bytes(data[:3]) == JPEG_SOI


def check_jpeg(
    data: Union[bytes, bytearray], label: str, content_type: Optional[str] = None
) -> None:
    """Raise :class:`CameraError` unless ``data`` is a whole JPEG (start and end marker).

    The body decides, not the Content-Type: some cameras label JPEGs
    ``application/octet-stream``, and error pages come as ``200 text/html``.
    """
    if not looks_like_jpeg(data):
        kind = media_type(content_type)
        raise CameraError(f"{label}: answered {kind} with {describe_body(data)}, not a JPEG")
    # some cameras pad a frame with zeros or a line break after the end marker
    if not bytes(data[-16:]).rstrip(b"\x00\r\n ").endswith(JPEG_EOI):
        raise CameraError(f"{label}: incomplete JPEG ({len(data)} bytes, no end-of-image marker)")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes/contexts and urllib3's ``reason``, breadth first."""
    seen = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)],
        ):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def explain_io_error(exc: BaseException, label: str, timeout: Optional[float]) -> str:
    """One clear sentence for an exception from ``requests``, urllib3 or a socket;
    ``timeout`` is the limit that applied (None when another plugin set it)."""
    chain = list(_causes(exc))
    names = {type(e).__name__ for e in chain}
    limit = f"after {timeout:g} s" if timeout else "(the webcam plugin's own timeout)"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and "HTTPError" in names:
        return str(http_error(label, status))
    if any(isinstance(e, OSError) and e.errno == errno.ECONNREFUSED for e in chain):
        return f"{label}: connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        return f"{label}: host name not found"
    if names & {"ConnectTimeout", "ConnectTimeoutError"}:
        return f"{label}: could not connect {limit}"
    if names & {"ReadTimeout", "ReadTimeoutError", "TimeoutError", "timeout"}:
        return f"{label}: timed out {limit}"
    if names & {"SSLError", "SSLCertVerificationError"}:
        return f"{label}: TLS error ({_last_words(exc)})"
    if "RemoteDisconnected" in names:
        return f"{label}: closed the connection without answering"
    if names & {"ChunkedEncodingError", "ProtocolError", "IncompleteRead"}:
        return f"{label}: the connection closed before the image was complete"
    if any(isinstance(e, http.client.HTTPException) for e in chain):
        # their text quotes what the server sent (a status line, a header)
        return f"{label}: not a valid HTTP answer"
    if names & {"InvalidURL", "MissingSchema", "InvalidSchema", "LocationParseError"}:
        return f"{label}: invalid URL"
    if any(isinstance(e, OSError) for e in chain) or "ConnectionError" in names:
        return f"{label}: cannot connect ({_last_words(exc)})"
    return f"{label}: {type(exc).__name__}: {_last_words(exc)}"


def _last_words(exc: BaseException) -> str:
    """The innermost message of an exception chain, without urllib3's object reprs."""
    text = str(list(_causes(exc))[-1]) or type(exc).__name__
    text = re.sub(r"<[^>]*object at 0x[0-9a-f]+>:?\s*", "", text)
    return text[:200]


# ---- flip / rotate -------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """OctoPrint's webcam display options, applied to the pixels.

    OctoPrint shows a webcam mirrored (``flipH``), upside down (``flipV``) and then turned
    90 degrees counter-clockwise (``rotate90``); the stored image looks the same.
    """

    flip_h: bool = False
    flip_v: bool = False
    rotate90: bool = False

    @property
    def identity(self) -> bool:
        return not (self.flip_h or self.flip_v or self.rotate90)

    def describe(self) -> str:
        steps = [
            text
            for on, text in (
                (self.flip_h, "flipped horizontally"),
                (self.flip_v, "flipped vertically"),
                (self.rotate90, "rotated 90° counter-clockwise"),
            )
            if on
        ]
        return ", ".join(steps)

    def for_storage(self, quality: int) -> Optional[Callable[[bytes], bytes]]:
        """What the image writer runs on each image before storing it; None when the
        camera's bytes are stored as received."""
        if self.identity:
            return None
        return lambda jpeg: self.apply(jpeg, quality)

    def apply(self, jpeg: bytes, quality: int) -> bytes:
        """The transformed image as a new JPEG (``jpeg`` itself when there is nothing to do)."""
        if self.identity:
            return jpeg
        with Image.open(io.BytesIO(jpeg)) as source:
            image = ImageOps.exif_transpose(source)
            if self.flip_h:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.flip_v:
                image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            if self.rotate90:
                image = image.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality)
        return out.getvalue()


def jpeg_size(data: bytes) -> Tuple[int, int]:
    """Width and height from the JPEG header (nothing is decoded)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return int(width), int(height)


# ---- the deadline and the retries ----------------------------------------------------------


class _DeadlineRunner:
    """Runs an attempt on a named thread and waits for it at most ``timeout`` seconds.

    An attempt that overruns keeps its thread until its own I/O timeouts end it (they are
    set to the same deadline); the next attempt gets a fresh thread, so it never queues
    behind a stuck one.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def run(self, fn: Callable[[], Tuple[bytes, str]], timeout: float) -> Tuple[bytes, str]:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=self._name
                )
            executor = self._executor
        future = executor.submit(fn)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False)
            raise DeadlineExceeded() from None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class RealCamera:
    """Base of the cameras that do I/O: ``take`` = attempts of :meth:`fetch` under a deadline.

    Subclasses implement :meth:`fetch` (return the JPEG bytes and their content type, or
    raise :class:`CameraError` with a finished sentence) and may implement :meth:`abort`
    (close the connection of an attempt that overran, from another thread).
    """

    def __init__(
        self,
        label: str,
        timeout: float,
        retries: int,
        transform: Optional[Transform] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.transform = transform or Transform()
        self.name = label if self.transform.identity else f"{label} ({self.transform.describe()})"
        self.timeout = float(timeout)
        self.attempts = 1 + max(0, int(retries))
        self._monotonic = monotonic
        self._runner = _DeadlineRunner(THREAD_NAME)

    def fetch(self, deadline: float) -> Tuple[bytes, str]:
        raise NotImplementedError

    def abort(self) -> None:
        """Break off the I/O of an attempt that ran past its deadline (best effort)."""

    def remaining(self, deadline: float) -> float:
        """Seconds left until ``deadline``; raises :class:`DeadlineExceeded` at 0."""
        left = deadline - self._monotonic()
        if left <= 0:
            raise DeadlineExceeded()
        return left

    def take(self, request: ShotRequest) -> Snapshot:
        started = self._monotonic()
        problem = ""
        for attempt in range(1, self.attempts + 1):
            deadline = self._monotonic() + self.timeout
            try:
                data, content_type = self._runner.run(
                    functools.partial(self.fetch, deadline), self.timeout
                )
            except DeadlineExceeded:
                self.abort()
                problem = f"{self.label}: timed out after {self.timeout:g} s"
            except PermanentCameraError as exc:
                problem = str(exc)
                break
            except CameraError as exc:
                problem = str(exc)
            except Exception as exc:
                _logger.exception(f"{self.label}: unexpected error")
                problem = f"{self.label}: unexpected error {exc!r}"
            else:
                return Snapshot(data, content_type, self._monotonic() - started, self.name)
            _logger.debug(f"attempt {attempt}/{self.attempts}: {problem}")
        else:
            if self.attempts > 1:
                problem += f" ({self.attempts} attempts)"
        raise CameraError(problem)

    def close(self) -> None:
        """Ends the camera's thread and connections; ``take`` may not be called again."""
        self._runner.close()
