"""Capture files on disk: paths inside the capture folder, atomic writes, thumbnails and
the store that writes a layer's images and metadata. Pure module (stdlib + Pillow); the
names are :mod:`store.names`, the metadata record :mod:`store.records`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Dict, Optional, Tuple

from PIL import Image, ImageOps

from .names import TEMP_PREFIX, TEMP_SUFFIX, day_folder, image_name, metadata_name, thumbnail_name
from .records import LayerMetadata

_logger = logging.getLogger("octoprint.plugins.layercapture.storage")

# ---- paths and atomic writes ---------------------------------------------------------------


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve a user-supplied relative path below ``root``.

    Raises ValueError when it is absolute, contains NUL bytes, backslashes or ``..``
    parts, or resolves (through symlinks) to somewhere outside ``root``. ``""`` is root.
    """
    if not isinstance(relative, str):
        raise ValueError("path must be text")
    if "\x00" in relative:
        raise ValueError("path contains a NUL byte")
    if "\\" in relative:
        raise ValueError("path contains a backslash")
    if relative.startswith("/") or os.path.isabs(relative) or re.match(r"^[A-Za-z]:", relative):
        raise ValueError("path must be relative")
    if ".." in relative.split("/"):
        raise ValueError("path must not contain '..'")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise ValueError("path leads outside the capture folder")
    return target


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    Writes a temporary ``.<name>.<random>.tmp`` in the same folder, fsyncs it and renames
    it over ``path``. On any error the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    fd, temp = tempfile.mkstemp(
        dir=str(path.parent), prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the OS allows it (best effort)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(root: Path) -> int:
    """Delete ``.*.tmp`` files left below ``root`` by an interrupted write; returns the count.

    Call it when nothing is writing (at startup). Symlinked folders are not followed.
    """
    removed = 0
    if not Path(root).is_dir():
        return 0
    for folder, _dirs, files in os.walk(str(root)):
        for name in files:
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError as exc:
                    _logger.warning(f"Could not remove stale file {name} in {folder}: {exc}")
    if removed:
        _logger.info(f"Removed {removed} unfinished temporary file(s) below {root}")
    return removed


# ---- thumbnails ----------------------------------------------------------------------------

_EXIF_ORIENTATION = 0x0112


def make_thumbnail(jpeg: bytes, max_size: Tuple[int, int] = (320, 240), quality: int = 85) -> bytes:
    """A JPEG no bigger than ``max_size``, keeping the aspect ratio.

    JPEG input is decoded in draft mode (DCT scaling: only as many pixels as needed);
    other formats Pillow reads (PNG...) are decoded fully. EXIF orientation is applied so
    the thumbnail looks like the browser's view of the original.
    """
    with Image.open(io.BytesIO(jpeg)) as source:
        if source.format == "JPEG":
            source.draft("RGB", max_size)
        image: Image.Image = source
        if source.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(source)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.thumbnail(max_size)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


# ---- the store -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    path: Path
    thumbnail_path: Optional[Path]
    size_bytes: int


class CaptureStore:
    """Writes captures below ``root`` (OctoPrint's uploads folder / capture folder).

    One layer's files share a day folder: the first image saved for a layer pins its date
    until that layer's metadata is saved (for files within :data:`PIN_WINDOW` of that
    image), so a capture running across midnight stays together. ``day`` overrides it.
    """

    PIN_WINDOW = timedelta(hours=1)

    def __init__(self, root: Path, folder_mode: int = 0o755, file_mode: int = 0o644) -> None:
        self.root = Path(root)
        self._folder_mode = folder_mode
        self._file_mode = file_mode
        self._pins: Dict[int, Tuple[date, datetime]] = {}  # layer -> (folder date, pinned at)

    def _pinned_day(self, layer: int, when: datetime) -> Optional[date]:
        pin = self._pins.get(layer)
        if pin is not None and abs(when - pin[1]) <= self.PIN_WINDOW:
            return pin[0]
        return None

    def folder_for(self, layer: int, when: datetime, day: Optional[date] = None) -> Path:
        """The day folder for a file of ``layer`` written at ``when`` (created if needed)."""
        chosen = day or self._pinned_day(layer, when) or when.date()
        folder = day_folder(self.root, chosen)
        folder.mkdir(mode=self._folder_mode, parents=True, exist_ok=True)
        return folder

    @property
    def file_mode(self) -> int:
        return self._file_mode

    def image_path(
        self,
        layer: int,
        index: int,
        layer_z: float,
        when: datetime,
        day: Optional[date] = None,
        camera: Optional[str] = None,
    ) -> Path:
        """Where the image of ``layer``/``index`` taken at ``when`` (by ``camera``, see
        :func:`names.image_name`) goes (the day folder is created and pinned for the layer);
        nothing is written yet."""
        name = image_name(layer, index, layer_z, when, camera)
        path = self.folder_for(layer, when, day) / name
        if self._pinned_day(layer, when) is None:
            self._pins[layer] = (day or when.date(), when)
        return path

    def save_image(
        self,
        layer: int,
        index: int,
        layer_z: float,
        when: datetime,
        data: bytes,
        thumbnail: bool,
        thumb_quality: int = 85,
        day: Optional[date] = None,
        camera: Optional[str] = None,
    ) -> SavedImage:
        """Store the image bytes unchanged (and a thumbnail when asked), right now.

        Raises OSError when the image cannot be written; a failed thumbnail is logged and
        reported as ``thumbnail_path=None`` (the image itself is kept). The capture
        sequence writes through :mod:`image_writer` instead, off the printer's path.
        """
        if not data:
            raise ValueError("no image data")
        path = self.image_path(layer, index, layer_z, when, day, camera)
        write_atomic(path, bytes(data), self._file_mode)
        thumb_path = None
        if thumbnail:
            try:
                thumb = make_thumbnail(data, quality=thumb_quality)
                thumb_path = path.with_name(thumbnail_name(path.name))
                write_atomic(thumb_path, thumb, self._file_mode)
            except Exception as exc:
                _logger.warning(f"Could not write the thumbnail of {path.name}: {exc}")
                thumb_path = None
        return SavedImage(path=path, thumbnail_path=thumb_path, size_bytes=len(data))

    def save_metadata(
        self, meta: LayerMetadata, when: datetime, day: Optional[date] = None
    ) -> Path:
        """Write ``meta`` as ``layer_NNNN_metadata_<when>.json`` atomically."""
        path = self.folder_for(meta.layer, when, day) / metadata_name(meta.layer, when)
        write_atomic(path, meta.to_json(), self._file_mode)
        self._pins.pop(meta.layer, None)
        return path
