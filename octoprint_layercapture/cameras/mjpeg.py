"""A camera behind an MJPEG stream URL (``multipart/x-mixed-replace``): one frame per take.

Which frame: the connection is opened when the snapshot is due (after the head settled and
the delays ran). A server may start a new connection with a frame it kept from before
(ustreamer, many IP cameras do), and anything that comes in one burst with it was buffered
too. So the first frame is thrown away together with every frame that had begun arriving
by the time it was complete, and the next frame that begins after that is returned. Then
the connection is closed, also on errors and timeouts.

The HTTP client is a small one on a plain socket (identity or chunked bodies, basic auth
from the URL, https): it must see exactly when bytes arrive, which ``requests`` hides.
"""

from __future__ import annotations

import base64
import re
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import unquote, urlsplit

from ..capture.ports import CameraError
from .base import (
    MAX_IMAGE_BYTES,
    USER_AGENT,
    DeadlineExceeded,
    RealCamera,
    check_jpeg,
    explain_io_error,
    http_error,
    media_type,
    redact_url,
)

_RECV = 64 * 1024
_MAX_HEADER_BYTES = 16 * 1024
_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)


class _StreamEnded(Exception):
    pass


class _Body:
    """The response body as it arrives (identity or chunked), bytes counted from its start."""

    def __init__(
        self,
        sock: socket.socket,
        raw: bytes,
        chunked: bool,
        remaining: Callable[[], float],
        label: str,
    ) -> None:
        self._sock = sock
        self._label = label
        self._raw = bytearray(raw)
        self._chunked = chunked
        self._remaining = remaining
        self._chunk_left = 0  # data bytes left in the current chunk
        self._eof = False
        self.buf = bytearray()  # decoded, not consumed
        self.offset = 0  # body offset of buf[0]
        self._decode()

    @property
    def end(self) -> int:
        """Body offset just past the last byte received so far."""
        return self.offset + len(self.buf)

    def consume(self, count: int) -> bytes:
        data = bytes(self.buf[:count])
        del self.buf[:count]
        self.offset += count
        return data

    def more(self) -> None:
        """Block until more body bytes arrived; :class:`_StreamEnded` at the end."""
        before = len(self.buf)
        while len(self.buf) == before:
            if self._eof:
                raise _StreamEnded()
            self._recv()

    def drain(self) -> int:
        """Take in everything already there without waiting; returns :attr:`end`."""
        while not self._eof:
            pending = isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0
            if not pending and not select.select([self._sock], [], [], 0)[0]:
                break
            self._recv()
        return self.end

    def _recv(self) -> None:
        self._sock.settimeout(self._remaining())
        try:
            data = self._sock.recv(_RECV)
        except socket.timeout:
            raise DeadlineExceeded() from None
        if not data:
            self._eof = True
        self._raw += data
        self._decode()
        if len(self.buf) > MAX_IMAGE_BYTES:
            raise CameraError(f"{self._label}: frame larger than {MAX_IMAGE_BYTES // 2**20} MB")

    def _decode(self) -> None:
        if not self._chunked:
            self.buf += self._raw
            self._raw.clear()
            return
        while self._raw:
            if self._chunk_left:
                take = min(self._chunk_left, len(self._raw))
                self.buf += self._raw[:take]
                del self._raw[:take]
                self._chunk_left -= take
                continue
            line_end = self._raw.find(b"\n")
            if line_end < 0:
                return
            line = bytes(self._raw[:line_end]).strip()
            del self._raw[: line_end + 1]
            if not line:  # the line break that ends a chunk's data
                continue
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                raise CameraError(f"{self._label}: broken chunked encoding") from None
            if size == 0:
                self._eof = True
                self._raw.clear()
                return
            self._chunk_left = size


@dataclass
class _Part:
    start: int  # body offset of its delimiter
    headers: Dict[str, str]
    data: bytes


class MjpegStreamCamera(RealCamera):
    def __init__(self, url: str, timeout: float, retries: int, **kwargs: Any) -> None:
        super().__init__(f"MJPEG stream {redact_url(url)}", timeout, retries, **kwargs)
        self.url = url
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None

    def fetch(self, deadline: float) -> Tuple[bytes, str]:
        try:
            sock = self._connect(deadline)
        except (OSError, ValueError) as exc:
            raise CameraError(explain_io_error(exc, self.label, self.timeout)) from exc
        try:
            return self._grab(sock, deadline)
        except _StreamEnded:
            raise CameraError(f"{self.label}: the stream ended before a new frame") from None
        except OSError as exc:
            raise CameraError(explain_io_error(exc, self.label, self.timeout)) from exc
        finally:
            with self._lock:
                self._sock = None
            sock.close()

    def abort(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked on another thread
            except OSError:
                pass

    # ---- HTTP

    def _connect(self, deadline: float) -> socket.socket:
        parts = urlsplit(self.url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("invalid URL")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=self.remaining(deadline))
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        with self._lock:
            self._sock = sock
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" + ("" if parts.port is None else f":{parts.port}")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host_header}",
            f"User-Agent: {USER_AGENT}",
            "Accept: multipart/x-mixed-replace, */*;q=0.1",
            "Connection: close",
        ]
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append("Authorization: Basic " + base64.b64encode(secret.encode()).decode())
        sock.settimeout(self.remaining(deadline))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return sock

    def _read_head(
        self, sock: socket.socket, deadline: float
    ) -> Tuple[int, str, Dict[str, str], bytes]:
        raw = bytearray()
        while True:
            end = raw.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(raw) > _MAX_HEADER_BYTES:
                raise CameraError(f"{self.label}: no HTTP answer (headers too long)")
            sock.settimeout(self.remaining(deadline))
            try:
                data = sock.recv(_RECV)
            except socket.timeout:
                raise DeadlineExceeded() from None
            if not data:
                if not raw:
                    raise CameraError(f"{self.label}: closed the connection without answering")
                raise _StreamEnded()
            raw += data
        head = bytes(raw[:end]).decode("latin-1").split("\r\n")
        status = head[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
            # what came is not quoted: it may be anything the host serves on that port
            raise CameraError(f"{self.label}: not an HTTP answer (no HTTP status line)")
        headers: Dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        reason = status[2] if len(status) > 2 else ""
        return int(status[1]), reason, headers, bytes(raw[end + 4 :])

    # ---- multipart

    def _grab(self, sock: socket.socket, deadline: float) -> Tuple[bytes, str]:
        code, reason, headers, rest = self._read_head(sock, deadline)
        if code != 200:
            raise http_error(self.label, code, reason)
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/"):
            hint = "; use it as the snapshot URL" if "image/" in content_type.lower() else ""
            raise CameraError(
                f"{self.label}: not an MJPEG stream (answered {media_type(content_type)})" + hint
            )
        found = _BOUNDARY.search(content_type)
        if not found:
            raise CameraError(f"{self.label}: the stream names no multipart boundary")
        # servers disagree on whether the parameter includes the leading "--"
        delimiter = b"--" + found.group(1).strip().lstrip("-").encode("latin-1")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        body = _Body(sock, rest, chunked, lambda: self.remaining(deadline), self.label)
        self._next_part(body, delimiter)  # may have been kept from before the settle point
        fresh_from = body.drain()
        while True:
            part = self._next_part(body, delimiter)
            kind = part.headers.get("content-type", "image/jpeg").lower()
            if part.start < fresh_from or not kind.startswith("image/"):
                continue
            check_jpeg(part.data, self.label, kind)
            return part.data, "image/jpeg"

    def _next_part(self, body: _Body, delimiter: bytes) -> _Part:
        while True:
            index = body.buf.find(delimiter)
            if index >= 0:
                break
            keep = len(delimiter)  # the delimiter may straddle two reads
            if len(body.buf) > keep:
                body.consume(len(body.buf) - keep)
            body.more()
        body.consume(index)
        start = body.offset
        while True:  # the part headers end with an empty line
            head_end = _headers_end(body.buf, len(delimiter))
            if head_end is not None:
                break
            if len(body.buf) > _MAX_HEADER_BYTES:
                raise CameraError(f"{self.label}: unreadable multipart headers")
            body.more()
        head = body.consume(head_end).decode("latin-1")
        lines = head.splitlines()[1:]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            if value:
                headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "")
        if length.isdigit():
            size = int(length)
            if size > MAX_IMAGE_BYTES:
                raise CameraError(f"{self.label}: frame larger than {MAX_IMAGE_BYTES // 2**20} MB")
            while len(body.buf) < size:
                body.more()
            return _Part(start, headers, body.consume(size))
        while True:  # no length: the frame ends where the next delimiter starts
            index = body.buf.find(delimiter)
            if index >= 0:
                return _Part(start, headers, body.consume(index).rstrip(b"\r\n"))
            body.more()


def _headers_end(buf: bytearray, skip: int) -> Optional[int]:
    """Index just past the empty line that ends the part headers after the delimiter."""
    first_line = buf.find(b"\n", skip)
    if first_line < 0:
        return None
    position = first_line + 1
    while True:
        line_end = buf.find(b"\n", position)
        if line_end < 0:
            return None
        if buf[position:line_end].strip(b"\r") == b"":
            return line_end + 1
        position = line_end + 1
