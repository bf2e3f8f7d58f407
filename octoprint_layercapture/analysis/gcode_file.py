"""The printed G-code file, read off OctoPrint's threads (the image writer's thread).

OctoPrint tags each line of the file it queues with ``filepos:N``: the byte offset just
after that line (its ``fileline:N`` counts only the lines with code, so it is no line
number of the file). The comm-thread hook keeps the ``filepos`` of the line that starts
each layer; this module turns those offsets into line numbers and reads the layer's bytes,
comments included (OctoPrint strips ``;`` comments before any hook sees a line, so slicer
comments such as PrusaSlicer's ``;WIDTH:`` are only found here).

One :class:`GcodeFile` per print, used from one thread. Layers come in ascending order, so
counting lines goes on from where the last layer left off: the whole print reads the file
about once. Pure module (stdlib only).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

BLOCK = 1024 * 1024
# how far back from a layer's start a slicer's last ;WIDTH:/;TYPE: comment is looked for
COMMENT_LOOKBACK = 4 * 1024 * 1024
_WIDTH = re.compile(rb";\s*WIDTH\s*:\s*([0-9]*\.?[0-9]+)")
_TYPE = re.compile(rb";\s*TYPE\s*:\s*([^\r\n;]{1,40})")


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size_bytes: int


class GcodeFile:
    """Reads one G-code file by byte offsets; every method may raise OSError."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._digest: Optional[FileDigest] = None
        # (offset, newlines before it): where line counting goes on from
        self._cursor: Tuple[int, int] = (0, 0)

    def digest(self) -> FileDigest:
        """SHA-256 and size of the file (computed once; hashlib lets other threads run
        while it hashes each block)."""
        if self._digest is None:
            sha = hashlib.sha256()
            size = 0
            with open(self.path, "rb") as handle:
                for block in iter(lambda: handle.read(BLOCK), b""):
                    sha.update(block)
                    size += len(block)
            self._digest = FileDigest(sha.hexdigest(), size)
        return self._digest

    def line_start(self, end: int) -> int:
        """The offset where the line ending at ``end`` (a ``filepos`` tag) begins."""
        if end <= 0:
            return 0
        with open(self.path, "rb") as handle:
            # the line's own line break is at end - 1: look before it
            stop = end - 1
            while stop > 0:
                start = max(0, stop - 4096)
                handle.seek(start)
                chunk = handle.read(stop - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    return start + cut + 1
                stop = start
        return 0

    def line_number(self, offset: int) -> int:
        """The 1-based number of the line that begins at (or contains) byte ``offset``."""
        position, newlines = self._cursor
        if offset < position:
            position, newlines = 0, 0
        with open(self.path, "rb") as handle:
            handle.seek(position)
            while position < offset:
                block = handle.read(min(BLOCK, offset - position))
                if not block:
                    break
                newlines += block.count(b"\n")
                position += len(block)
        self._cursor = (position, newlines)
        return newlines + 1

    def read(self, start: int, end: int) -> bytes:
        """The bytes ``[start, end)``."""
        if end <= start:
            return b""
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def comments_before(self, offset: int) -> Tuple[Optional[float], Optional[str]]:
        """The last ``;WIDTH:`` value and ``;TYPE:`` name in the file before ``offset``
        (within :data:`COMMENT_LOOKBACK` bytes): what is in force where a layer starts."""
        start = max(0, offset - COMMENT_LOOKBACK)
        data = self.read(start, offset)
        widths = list(_WIDTH.finditer(data))
        types = list(_TYPE.finditer(data))
        width = float(widths[-1].group(1)) if widths else None
        kind = types[-1].group(1).decode("utf-8", "replace").strip() if types else None
        return (width if width and width > 0 else None), (kind or None)
