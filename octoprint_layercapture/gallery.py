"""The gallery's index of captured layers, grouped into prints.

Pure module (stdlib only, plus :mod:`storage` for names). The capture folder is read once
(:meth:`CaptureIndex.ensure_built`); afterwards the worker reports each metadata file it
writes (:meth:`CaptureIndex.add_metadata_file`) and deletions go through the index, so
answering a request never walks the folder tree.

A print is the set of layers whose metadata share ``gcode_file`` and ``print_start_time``.
Only files whose names follow the storage patterns, inside ``YYYY-MM-DD`` folders, that are
regular files (never symlinks) are indexed; :meth:`CaptureIndex.file_path` answers only for
indexed files, which is what the download routes serve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .gallery_records import layer_record
from .storage import is_day_folder_name, parse_metadata_name, read_metadata, resolve_inside

_logger = logging.getLogger("octoprint.plugins.layercapture.gallery")

PRINT_ID_LENGTH = 16


def print_id(gcode_file: str, print_start_time: Optional[str], day: str) -> str:
    """A stable, URL-safe id for the print a layer belongs to.

    Layers without a start time (metadata written by other tools) are grouped per day.
    """
    start = print_start_time or f"day:{day}"
    digest = hashlib.sha256(f"{gcode_file}\x00{start}".encode()).hexdigest()
    return digest[:PRINT_ID_LENGTH]


def is_print_id(value: str) -> bool:
    return (
        isinstance(value, str)
        and len(value) == PRINT_ID_LENGTH
        and all(c in "0123456789abcdef" for c in value)
    )


def _regular_file(path: Path) -> Optional[os.stat_result]:
    """``lstat`` of a regular file (a symlink or anything else gives None)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


@dataclass
class _Print:
    id: str
    gcode_file: str
    print_start_time: Optional[str]
    layers: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # metadata path -> layer
    encoded: Dict[str, str] = field(default_factory=dict)  # metadata path -> layer as JSON
    _ordered: Optional[List[Dict[str, Any]]] = None
    _summary: Optional[Dict[str, Any]] = None

    def changed(self) -> None:
        self._ordered = None
        self._summary = None

    def ordered(self) -> List[Dict[str, Any]]:
        if self._ordered is None:
            self._ordered = sorted(
                self.layers.values(),
                key=lambda d: (d["layer"], d["timestamp"] or "", d["metadata"]),
            )
        return self._ordered

    def summary(self) -> Dict[str, Any]:
        if self._summary is None:
            layers = self.ordered()
            stamps = [d["timestamp"] for d in layers if d["timestamp"]]
            cover = next(
                (i for d in layers for i in d["images"] if i["thumbnail"] or i["path"]), None
            )
            self._summary = {
                "id": self.id,
                "gcode_file": self.gcode_file,
                "print_start_time": self.print_start_time,
                "first_capture": min(stamps) if stamps else None,
                "last_capture": max(stamps) if stamps else None,
                "layer_count": len(layers),
                "image_count": sum(len(d["images"]) for d in layers),
                "failure_count": sum(len(d["failures"]) for d in layers),
                "size_bytes": sum(d["size_bytes"] for d in layers),
                "cover": None if cover is None else (cover["thumbnail"] or cover["path"]),
            }
        return self._summary


@dataclass(frozen=True)
class Page:
    items: List[Dict[str, Any]]
    total: int
    offset: int
    limit: int

    def to_dict(self, name: str) -> Dict[str, Any]:
        return {name: self.items, "total": self.total, "offset": self.offset, "limit": self.limit}


@dataclass(frozen=True)
class DeleteResult:
    files: int
    failed: List[str]


class CaptureIndex:
    """Thread-safe index of the capture folder; see the module docstring."""

    def __init__(self, root: Optional[Path] = None) -> None:
        self._lock = threading.RLock()
        self._root: Optional[Path] = Path(root) if root is not None else None
        self._built = False
        self._prints: Dict[str, _Print] = {}
        self._files: Dict[str, str] = {}  # relative path -> print id
        self._layer_of: Dict[str, str] = {}  # metadata path -> print id
        self._sorted: Optional[List[_Print]] = None

    # ---- root and building -----------------------------------------------------------

    @property
    def root(self) -> Optional[Path]:
        return self._root

    def use_root(self, root: Path) -> None:
        """Point the index at ``root`` (the capture folder); a new root is read anew."""
        root = Path(root)
        with self._lock:
            if self._root != root:
                self._root = root
                self._clear()

    def _clear(self) -> None:
        self._built = False
        self._prints = {}
        self._files = {}
        self._layer_of = {}
        self._sorted = None

    def ensure_built(self) -> None:
        """Read the capture folder unless that was done already for the current root."""
        with self._lock:
            if not self._built:
                self._build()

    def rebuild(self) -> None:
        with self._lock:
            self._clear()
            self._build()

    def _build(self) -> None:
        root = self._root
        self._built = True
        if root is None or not root.is_dir():
            return
        layers = 0
        try:
            days = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as exc:
            _logger.warning(f"Could not read the capture folder {root}: {exc}")
            return
        for day in days:
            if not is_day_folder_name(day.name) or not day.is_dir(follow_symlinks=False):
                continue
            try:
                entries = {
                    e.name: e.stat(follow_symlinks=False).st_size
                    for e in os.scandir(day.path)
                    if e.is_file(follow_symlinks=False)
                }
            except OSError as exc:
                _logger.warning(f"Could not read {day.path}: {exc}")
                continue
            for name in sorted(entries):
                if parse_metadata_name(name) is not None:
                    layers += self._add(day.name, name, entries)
        _logger.info(
            f"Indexed {layers} captured layers ({len(self._files)} files) "
            f"in {len(self._prints)} prints below {root}"
        )

    # ---- incremental updates ---------------------------------------------------------

    def add_metadata_file(self, path: Path) -> bool:
        """Index a layer whose metadata (and images) were just written; False when the
        file is not a metadata file inside a day folder of the current root."""
        path = Path(path)
        with self._lock:
            root = self._root
            if root is None or not self._built:
                return False  # the first build will read it
            day = path.parent.name
            if path.parent.parent != root:
                try:
                    if path.parent.parent.resolve() != root.resolve():
                        return False
                except OSError:
                    return False
            if not is_day_folder_name(day) or parse_metadata_name(path.name) is None:
                return False
            return bool(self._add(day, path.name, None))

    def _add(self, day: str, name: str, sizes: Optional[Mapping[str, int]]) -> int:
        """Index one metadata file; ``sizes`` is the day folder's listing (None: stat)."""
        assert self._root is not None
        key = f"{day}/{name}"
        try:
            meta = read_metadata(self._root / day / name)
        except (OSError, ValueError) as exc:
            _logger.warning(f"Skipping unreadable capture metadata {key}: {exc}")
            return 0

        def size_of(file_name: str) -> Optional[int]:
            if sizes is not None:
                return sizes.get(file_name)
            info = _regular_file(self._root / day / file_name)  # type: ignore[operator]
            return None if info is None else info.st_size

        self._remove_layer(key)
        layer = layer_record(key, day, meta, size_of)
        metadata_size = size_of(name) or 0
        pid = print_id(layer["gcode_file"], layer["print_start_time"], day)
        entry = self._prints.get(pid)
        if entry is None:
            entry = self._prints[pid] = _Print(pid, layer["gcode_file"], layer["print_start_time"])
            self._sorted = None
        layer["print_id"] = pid
        layer["size_bytes"] += metadata_size
        entry.layers[key] = layer
        # serialised once here: listing thousands of layers only joins these
        entry.encoded[key] = json.dumps(layer, separators=(",", ":"))
        entry.changed()
        self._layer_of[key] = pid
        self._files[key] = pid
        for image in layer["images"]:
            self._files[image["path"]] = pid
            if image["thumbnail"]:
                self._files[image["thumbnail"]] = pid
        return 1

    def _remove_layer(self, key: str) -> None:
        pid = self._layer_of.pop(key, None)
        if pid is None:
            return
        entry = self._prints.get(pid)
        layer = entry.layers.pop(key, None) if entry is not None else None
        if entry is not None:
            entry.encoded.pop(key, None)
        self._files.pop(key, None)
        if layer is not None:
            for image in layer["images"]:
                self._files.pop(image["path"], None)
                if image["thumbnail"]:
                    self._files.pop(image["thumbnail"], None)
        if entry is not None:
            entry.changed()
            if not entry.layers:
                del self._prints[pid]
                self._sorted = None

    # ---- queries ---------------------------------------------------------------------

    def _ordered_prints(self) -> List[_Print]:
        if self._sorted is None:
            self._sorted = sorted(
                self._prints.values(),
                key=lambda p: (p.print_start_time or p.summary()["first_capture"] or "", p.id),
                reverse=True,
            )
        return self._sorted

    def prints(self, offset: int = 0, limit: Optional[int] = None) -> Page:
        """Print summaries, newest first."""
        self.ensure_built()
        with self._lock:
            ordered = self._ordered_prints()
            chosen = ordered[offset : None if limit is None else offset + limit]
            return Page([p.summary() for p in chosen], len(ordered), offset, limit or 0)

    def print_summary(self, pid: str) -> Optional[Dict[str, Any]]:
        self.ensure_built()
        with self._lock:
            entry = self._prints.get(pid)
            return None if entry is None else entry.summary()

    def layers(self, pid: str, offset: int = 0, limit: Optional[int] = None) -> Optional[Page]:
        """A print's layers (with their images), lowest layer first; None: unknown print."""
        self.ensure_built()
        with self._lock:
            entry = self._prints.get(pid)
            if entry is None:
                return None
            ordered = entry.ordered()
            chosen = ordered[offset : None if limit is None else offset + limit]
            return Page(list(chosen), len(ordered), offset, limit or 0)

    def layers_json(self, pid: str, offset: int = 0, limit: Optional[int] = None) -> Optional[str]:
        """:meth:`layers` as the JSON text of ``Page.to_dict("layers")``, from the layers
        serialised when they were indexed; None: unknown print."""
        self.ensure_built()
        with self._lock:
            entry = self._prints.get(pid)
            if entry is None:
                return None
            ordered = entry.ordered()
            chosen = ordered[offset : None if limit is None else offset + limit]
            items = ",".join(entry.encoded[d["metadata"]] for d in chosen)
        tail = json.dumps({"total": len(ordered), "offset": offset, "limit": limit or 0})
        return '{"layers":[' + items + "]," + tail[1:]

    def file_path(self, relative: str) -> Optional[Path]:
        """Absolute path of an indexed file (image, thumbnail, metadata), else None.

        The path is also resolved below the root (symlinks followed), so a file replaced
        by a symlink after indexing is refused too.
        """
        self.ensure_built()
        with self._lock:
            root = self._root
            if root is None or relative not in self._files:
                return None
        try:
            path = resolve_inside(root, relative)
        except ValueError:
            return None
        return path if _regular_file(root / relative) is not None else None

    def print_files(self, pid: str, thumbnails: bool = False) -> Optional[List[Tuple[str, Path]]]:
        """``(relative path, absolute path)`` of a print's images and metadata files, by
        layer; None for an unknown print."""
        self.ensure_built()
        with self._lock:
            entry = self._prints.get(pid)
            root = self._root
            if entry is None or root is None:
                return None
            files: List[Tuple[str, Path]] = []
            for layer in entry.ordered():
                for image in layer["images"]:
                    files.append((image["path"], root / image["path"]))
                    if thumbnails and image["thumbnail"]:
                        files.append((image["thumbnail"], root / image["thumbnail"]))
                files.append((layer["metadata"], root / layer["metadata"]))
            return files

    def counts(self) -> Tuple[int, int]:
        """(prints, files) currently indexed."""
        self.ensure_built()
        with self._lock:
            return len(self._prints), len(self._files)

    # ---- deleting --------------------------------------------------------------------

    def delete_print(self, pid: str) -> Optional[DeleteResult]:
        """Delete a print's files (images, thumbnails, metadata) and empty day folders;
        None for an unknown print."""
        self.ensure_built()
        with self._lock:
            entry = self._prints.get(pid)
            root = self._root
            if entry is None or root is None:
                return None
            relatives = [rel for rel, owner in self._files.items() if owner == pid]
            for key in list(entry.layers):
                self._remove_layer(key)
            return self._unlink(root, relatives)

    @staticmethod
    def _unlink(root: Path, relatives: Iterable[str]) -> DeleteResult:
        deleted = 0
        failed: List[str] = []
        days = set()

        # metadata last, so an interrupted delete leaves a layer that is still indexable
        def metadata_last(rel: str) -> bool:
            return parse_metadata_name(rel.rsplit("/", 1)[-1]) is not None

        for rel in sorted(relatives, key=metadata_last):
            try:
                path = resolve_inside(root, rel)
                os.unlink(path)
                deleted += 1
                days.add(path.parent)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                _logger.warning(f"Could not delete {rel}: {exc}")
                failed.append(rel)
        for day in days:
            try:
                day.rmdir()  # only when empty
            except OSError:
                pass
        return DeleteResult(deleted, failed)
