"""The frames of a video that are not camera JPEGs as they are (Pillow).

Pure module (stdlib + Pillow), no OctoPrint. ffmpeg tiles the grid itself (``xstack``, in
its own low-priority process, away from OctoPrint's interpreter); what it needs from here:

* a **labelled blank** for a layer without an image at a position (``#4``, the layer and
  why: outside the bed, camera failure), the size of the camera frames;
* a camera image of **another size** than the rest of its video (a camera changed during a
  print) letterboxed to that size: ffmpeg's filters would otherwise be rebuilt mid-stream,
  which drops frames.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Sequence, Tuple

from PIL import Image, ImageDraw, ImageOps

from ...cameras.fake import pillow_font

Size = Tuple[int, int]

BLANK_QUALITY = 85
_BACKGROUND = (38, 41, 47)
_BORDER = (90, 96, 108)
_TEXT = (225, 228, 235)
_MUTED = (160, 166, 178)


def image_size(path: Path) -> Size:
    """Width and height from the file's header (no decoding); OSError when unreadable."""
    try:
        with Image.open(path) as image:
            return int(image.size[0]), int(image.size[1])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"{Path(path).name} is not a readable image ({exc})") from exc


def blank_frame(size: Size, title: str, lines: Sequence[str]) -> bytes:
    """A JPEG of ``size``: a dark frame with ``title`` large and ``lines`` below it."""
    width, height = size
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    border = max(1, min(width, height) // 120)
    draw.rectangle((0, 0, width - 1, height - 1), outline=_BORDER, width=border)
    big = pillow_font(max(10, height // 6))
    small = pillow_font(max(8, height // 14))
    average = draw.textlength("abcdefghijklmnopqrstuvwxyz", font=small) / 26
    chars = max(8, int(0.9 * width / max(average, 1.0)))  # what fits on one line
    wrapped = [
        part
        for line in lines
        for part in textwrap.wrap(line, chars, max_lines=3, placeholder=" ...")
    ]
    rows = [(title, big, _TEXT)] + [(line, small, _MUTED) for line in wrapped[:5]]
    boxes = [draw.textbbox((0, 0), text, font=font) for text, font, _ in rows]
    gap = max(2, height // 30)
    total = sum(box[3] - box[1] for box in boxes) + gap * (len(rows) - 1)
    y = (height - total) / 2
    for (text, font, colour), (left, top, right, bottom) in zip(rows, boxes):
        # the box's offsets: text is drawn from its origin, not from its ink
        draw.text(((width - (right - left)) / 2 - left, y - top), text, fill=colour, font=font)
        y += bottom - top + gap
    out = io.BytesIO()
    image.save(out, "JPEG", quality=BLANK_QUALITY)
    return out.getvalue()


def letterboxed(path: Path, size: Size, quality: int = 90) -> bytes:
    """The image at ``path`` scaled to fit ``size`` (up or down, aspect kept, centred on
    black), as a JPEG; OSError when it cannot be read."""
    try:
        with Image.open(path) as source:
            if source.format == "JPEG":
                source.draft("RGB", size)  # decode no more pixels than needed
            image = source.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"{Path(path).name} is not a readable image ({exc})") from exc
    image = ImageOps.contain(image, size)
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=quality)
    return out.getvalue()
