"""The gallery's index of captured layers, grouped into prints.

Pure module (stdlib, and :mod:`store.names` for the names). The capture folder is read once
(:meth:`CaptureIndex.ensure_built`); afterwards the worker reports each metadata file it
writes (:meth:`CaptureIndex.add_metadata_file`) and deletions go through the index, so
answering a request never walks the folder tree.

A print is the set of layers whose metadata share ``gcode_file`` and ``print_start_time``.
Only files whose names follow the storage patterns, inside ``YYYY-MM-DD`` folders, that are
regular files (never symlinks) are indexed; :meth:`CaptureIndex.file_path` answers only for
indexed files, which is what the download routes serve.

Reading files (building, adding a layer) and deleting them happen outside the lock, which
is only held to read or swap the in-memory state: OctoPrint's web server thread asks for
files and must never wait for the disk behind it.

Files changed behind the plugin's back through OctoPrint's file manager (the Files panel,
``/api/files``: day folders deleted or moved) are followed: the plugin maps each file event
to the day folders it touches (:func:`capture_days`) and :meth:`CaptureIndex.refresh_later`
reads just those again on a background thread.

A print's videos (``analysis.video``) are indexed from the frames file beside each
(:func:`entries.video_record`): served, zipped and deleted with the print like its images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

from .entries import PrintEntry, SizeOf, layer_record, video_record
from .files import resolve_inside
from .names import is_day_folder_name, parse_metadata_name, parse_video_name
from .records import read_metadata

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


@dataclass(frozen=True)
class _Layer:
    """A layer read from disk, ready to insert."""

    key: str  # metadata path relative to the root
    record: Dict[str, Any]
    encoded: str


def _sizes(root: Path, day: str, sizes: Optional[Mapping[str, int]]) -> SizeOf:
    """Sizes of a day folder's files: from its listing, or (None) from ``lstat``."""

    def size_of(file_name: str) -> Optional[int]:
        if sizes is not None:
            return sizes.get(file_name)
        info = _regular_file(root / day / file_name)
        return None if info is None else info.st_size

    return size_of


@dataclass(frozen=True)
class _Video:
    """A video read from disk (its frames file), ready to insert."""

    key: str  # frames file path relative to the root
    record: Dict[str, Any]


_Item = Union[_Layer, _Video]


def _read_video(
    root: Path, day: str, name: str, sizes: Optional[Mapping[str, int]]
) -> Optional[_Video]:
    """Read one video's frames file (disk; no lock); None when it or its video is not ours."""
    key = f"{day}/{name}"
    parsed = parse_video_name(name)
    if parsed is None or not parsed.is_frames_file or not is_print_id(parsed.print_id):
        return None
    try:
        document = read_metadata(root / day / name)
    except (OSError, ValueError) as exc:
        _logger.warning(f"Skipping unreadable video frames file {key}: {exc}")
        return None

    record = video_record(key, day, document, _sizes(root, day, sizes))
    return None if record is None else _Video(key, record)


def _read_layer(
    root: Path, day: str, name: str, sizes: Optional[Mapping[str, int]]
) -> Optional[_Layer]:
    """Read one metadata file (disk; no lock); ``sizes`` lists the day folder (None: stat)."""
    key = f"{day}/{name}"
    try:
        meta = read_metadata(root / day / name)
    except (OSError, ValueError) as exc:
        _logger.warning(f"Skipping unreadable capture metadata {key}: {exc}")
        return None

    size_of = _sizes(root, day, sizes)
    record = layer_record(key, day, meta, size_of)
    record["print_id"] = print_id(record["gcode_file"], record["print_start_time"], day)
    record["size_bytes"] += size_of(name) or 0
    # serialised once here: listing thousands of layers only joins these
    return _Layer(key, record, json.dumps(record, separators=(",", ":")))


LAYER_FILE_KEYS = ("toolpath", "toolpath_svg", "mosaic", "mosaic_toolpath", "mosaic_departure")


def _layer_files(record: Mapping[str, Any]) -> List[str]:
    """A layer's files besides its images and metadata: the toolpath JSON and SVG, the
    mosaic and its overlays."""
    return [record[key] for key in LAYER_FILE_KEYS if record.get(key)]


class _State:
    """The indexed prints of one root; the index's lock guards it."""

    def __init__(self) -> None:
        self.prints: Dict[str, PrintEntry] = {}
        self.files: Dict[str, str] = {}  # relative path -> print id
        self.layer_of: Dict[str, str] = {}  # metadata path -> print id
        self.videos: Dict[str, Dict[str, Any]] = {}  # frames file path -> video record
        self._sorted: Optional[List[PrintEntry]] = None

    def add(self, item: _Item) -> None:
        if isinstance(item, _Video):
            self.insert_video(item)
        else:
            self.insert(item)

    def insert_video(self, video: _Video) -> None:
        self.remove_video(video.key)
        pid = video.record["print_id"]
        self.videos[video.key] = video.record
        self.files[video.key] = pid
        self.files[video.record["path"]] = pid

    def video_counts(self) -> Dict[str, int]:
        """Videos per print id."""
        counts: Dict[str, int] = {}
        for record in self.videos.values():
            counts[record["print_id"]] = counts.get(record["print_id"], 0) + 1
        return counts

    def remove_video(self, key: str) -> None:
        record = self.videos.pop(key, None)
        if record is not None:
            self.files.pop(key, None)
            self.files.pop(record["path"], None)

    def insert(self, layer: _Layer) -> None:
        self.remove(layer.key)
        record = layer.record
        pid = record["print_id"]
        entry = self.prints.get(pid)
        if entry is None:
            entry = PrintEntry(pid, record["gcode_file"], record["print_start_time"])
            self.prints[pid] = entry
            self._sorted = None
        entry.layers[layer.key] = record
        entry.encoded[layer.key] = layer.encoded
        entry.changed()
        self.layer_of[layer.key] = pid
        self.files[layer.key] = pid
        for image in record["images"]:
            self.files[image["path"]] = pid
            if image["thumbnail"]:
                self.files[image["thumbnail"]] = pid
        for extra in _layer_files(record):
            self.files[extra] = pid

    def remove(self, key: str) -> None:
        pid = self.layer_of.pop(key, None)
        entry = self.prints.get(pid) if pid is not None else None
        if entry is None:
            return
        record = entry.layers.pop(key, None)
        entry.encoded.pop(key, None)
        self.files.pop(key, None)
        for image in record["images"] if record else ():
            self.files.pop(image["path"], None)
            if image["thumbnail"]:
                self.files.pop(image["thumbnail"], None)
        for extra in _layer_files(record) if record else ():
            self.files.pop(extra, None)
        entry.changed()
        if not entry.layers:
            del self.prints[entry.id]
            self._sorted = None

    def ordered(self) -> List[PrintEntry]:
        """Newest first."""
        if self._sorted is None:
            self._sorted = sorted(
                self.prints.values(),
                key=lambda p: (p.print_start_time or p.summary()["first_capture"] or "", p.id),
                reverse=True,
            )
        return self._sorted


def _read_day(root: Path, day: str) -> List[_Item]:
    """The layers and videos of one day folder (none when it is missing or a symlink)."""
    path = root / day
    try:
        if not is_day_folder_name(day) or not stat.S_ISDIR(os.lstat(path).st_mode):
            return []
        sizes = {
            e.name: e.stat(follow_symlinks=False).st_size
            for e in os.scandir(path)
            if e.is_file(follow_symlinks=False)
        }
    except FileNotFoundError:
        return []
    except OSError as exc:
        _logger.warning(f"Could not read {path}: {exc}")
        return []
    items: List[_Item] = []
    for name in sorted(sizes):
        item: Optional[_Item] = None
        if parse_metadata_name(name) is not None:
            item = _read_layer(root, day, name, sizes)
        elif parse_video_name(name) is not None:
            item = _read_video(root, day, name, sizes)
        if item is not None:
            items.append(item)
    return items


def _scan(root: Path) -> _State:
    """Read every metadata file below ``root`` (day folders only, no symlinks)."""
    state = _State()
    if not root.is_dir():
        return state
    try:
        days = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        _logger.warning(f"Could not read the capture folder {root}: {exc}")
        return state
    for day in days:
        if not is_day_folder_name(day.name) or not day.is_dir(follow_symlinks=False):
            continue
        for item in _read_day(root, day.name):
            state.add(item)
    _logger.info(
        f"Indexed {len(state.layer_of)} captured layers ({len(state.files)} files) "
        f"in {len(state.prints)} prints below {root}"
    )
    return state


def capture_days(capture_folder: str, path: str) -> Optional[Set[str]]:
    """The day folders of the capture folder that a change of ``path`` touches; both are
    relative to the same base (OctoPrint's uploads folder). None: the capture folder
    itself or a folder above it (read it all again); empty: nothing of ours."""
    folder = capture_folder.strip("/")
    changed = path.strip("/")
    if changed == folder or not changed or folder.startswith(changed + "/"):
        return None
    if not changed.startswith(folder + "/"):
        return set()
    day = changed[len(folder) + 1 :].split("/", 1)[0]
    return {day} if is_day_folder_name(day) else set()


REFRESH_THREAD_NAME = "layercapture-index-refresh"


class CaptureIndex:
    """Thread-safe index of the capture folder; see the module docstring."""

    def __init__(self, root: Optional[Path] = None) -> None:
        self._lock = threading.Lock()  # guards the fields below; held briefly
        self._build_lock = threading.Lock()  # one folder scan at a time
        self._root: Optional[Path] = Path(root) if root is not None else None
        self._state: Optional[_State] = None  # None: not read yet
        self._generation = 0  # bumped when the root changes
        self._building = False
        self._pending: List[Path] = []  # layers added while a scan ran
        # refresh_later's work: day folders to read again, or everything
        self._refresh_days: Set[str] = set()
        self._refresh_all = False
        self._refreshing = False

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
                self._state = None
                self._generation += 1

    def ensure_built(self) -> None:
        """Read the capture folder unless that was done already for the current root
        (callers wait for a scan in progress: its answer is the complete one)."""
        if self._state is not None:
            return
        with self._build_lock:
            if self._state is None:
                self._build()

    def rebuild(self) -> None:
        """Read the capture folder again (files changed by hand)."""
        with self._build_lock:
            self._build()

    def _build(self) -> None:
        with self._lock:
            root, generation = self._root, self._generation
            self._building = True
            self._pending = []
        try:
            state = _scan(root) if root is not None else _State()
        finally:
            with self._lock:
                self._building = False
                pending, self._pending = self._pending, []
        # layers written while the scan ran may have been missed by it: read them again
        late = [layer for layer in (self._read(path) for path in pending) if layer is not None]
        with self._lock:
            if generation == self._generation:
                for layer in late:
                    state.add(layer)
                self._state = state

    def refresh(self, days: Optional[Iterable[str]]) -> None:
        """Read these day folders again (None: the whole capture folder), after files
        changed outside the plugin. Nothing to do before the first read."""
        if days is None:
            if self._state is not None:
                self.rebuild()
            return
        wanted = sorted({day for day in days if is_day_folder_name(day)})
        if not wanted:
            return
        with self._build_lock:
            with self._lock:
                root, generation, state = self._root, self._generation, self._state
                if root is None or state is None:
                    return
                self._building = True
                self._pending = []
            try:
                fresh = {day: _read_day(root, day) for day in wanted}
            finally:
                with self._lock:
                    self._building = False
                    pending, self._pending = self._pending, []
            late = [layer for layer in (self._read(path) for path in pending) if layer is not None]
            with self._lock:
                if generation != self._generation or self._state is not state:
                    return
                for day, items in fresh.items():
                    for key in [k for k in state.layer_of if k.startswith(day + "/")]:
                        state.remove(key)
                    for key in [k for k in state.videos if k.startswith(day + "/")]:
                        state.remove_video(key)
                    for item in items:
                        state.add(item)
                for item in late:
                    state.add(item)
        _logger.info(f"Read {len(wanted)} day folder(s) again: {', '.join(wanted)}")

    def refresh_later(self, days: Optional[Iterable[str]]) -> None:
        """:meth:`refresh` on a background thread (events must not wait for the disk);
        changes that come while it runs are gathered into its next round."""
        with self._lock:
            if days is None:
                self._refresh_all = True
            else:
                self._refresh_days.update(days)
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh_rounds, name=REFRESH_THREAD_NAME, daemon=True).start()

    def _refresh_rounds(self) -> None:
        """The refresh thread: ends once no change is waiting."""
        while True:
            with self._lock:
                everything, days = self._refresh_all, self._refresh_days
                self._refresh_all, self._refresh_days = False, set()
                if not everything and not days:
                    self._refreshing = False
                    return
            try:
                self.refresh(None if everything else days)
            except Exception:
                _logger.exception("Could not read the capture folder again after a change")

    # ---- incremental updates ---------------------------------------------------------

    def _read(self, path: Path) -> Optional[_Item]:
        root = self._root
        if root is None or path.parent.parent != root:
            try:
                if root is None or path.parent.parent.resolve() != root.resolve():
                    return None
            except OSError:
                return None
        day = path.parent.name
        if not is_day_folder_name(day):
            return None
        if parse_metadata_name(path.name) is None:
            return _read_video(root, day, path.name, None)
        return _read_layer(root, day, path.name, None)

    def add_metadata_file(self, path: Path) -> bool:
        """Index a layer whose metadata (and images) were just written, or a video whose
        frames file was; False when the file is neither, inside a day folder of the
        current root."""
        path = Path(path)
        with self._lock:
            if self._building:
                self._pending.append(path)
            generation = self._generation
        layer = self._read(path)
        if layer is None:
            return False
        with self._lock:
            if self._state is not None and generation == self._generation:
                self._state.add(layer)
        return True

    # ---- queries ---------------------------------------------------------------------

    def _current(self) -> Tuple[_State, Optional[Path]]:
        self.ensure_built()
        state = self._state
        return (state if state is not None else _State()), self._root

    def prints(self, offset: int = 0, limit: Optional[int] = None) -> Page:
        """Print summaries, newest first."""
        state, _root = self._current()
        with self._lock:
            ordered = state.ordered()
            chosen = ordered[offset : None if limit is None else offset + limit]
            videos = state.video_counts()
            items = [{**p.summary(), "video_count": videos.get(p.id, 0)} for p in chosen]
            return Page(items, len(ordered), offset, limit or 0)

    def print_summary(self, pid: str) -> Optional[Dict[str, Any]]:
        state, _root = self._current()
        with self._lock:
            entry = state.prints.get(pid)
            if entry is None:
                return None
            return {**entry.summary(), "video_count": state.video_counts().get(pid, 0)}

    def layers(self, pid: str, offset: int = 0, limit: Optional[int] = None) -> Optional[Page]:
        """A print's layers (with their images), lowest layer first; None: unknown print."""
        state, _root = self._current()
        with self._lock:
            found = self._layer_slice(state, pid, offset, limit)
        if found is None:
            return None
        _entry, chosen, total = found
        return Page(chosen, total, offset, limit or 0)

    def layers_json(self, pid: str, offset: int = 0, limit: Optional[int] = None) -> Optional[str]:
        """:meth:`layers` as the JSON text of ``Page.to_dict("layers")``, from the layers
        serialised when they were indexed; None: unknown print."""
        state, _root = self._current()
        with self._lock:
            found = self._layer_slice(state, pid, offset, limit)
            if found is None:
                return None
            entry, chosen, total = found
            items = ",".join(entry.encoded[d["metadata"]] for d in chosen)
        tail = json.dumps({"total": total, "offset": offset, "limit": limit or 0})
        return '{"layers":[' + items + "]," + tail[1:]

    @staticmethod
    def _layer_slice(
        state: _State, pid: str, offset: int, limit: Optional[int]
    ) -> Optional[Tuple[PrintEntry, List[Dict[str, Any]], int]]:
        """The print's entry, its layers from ``offset`` (at most ``limit``) and how many it
        has; None: unknown print. Called with the lock held."""
        entry = state.prints.get(pid)
        if entry is None:
            return None
        ordered = entry.ordered()
        return (
            entry,
            list(ordered[offset : None if limit is None else offset + limit]),
            len(ordered),
        )

    def videos(self, pid: str) -> List[Dict[str, Any]]:
        """The videos of a print: the first camera's, then the others' (by name); each
        camera's grid video first, then by position."""
        state, _root = self._current()
        with self._lock:
            found = [dict(v) for v in state.videos.values() if v["print_id"] == pid]
        return sorted(
            found,
            key=lambda v: (
                not v["first_camera"],
                v["camera"],
                v["index"] is not None,
                v["index"] or 0,
            ),
        )

    def file_path(self, relative: str) -> Optional[Path]:
        """Absolute path of an indexed file (image, thumbnail, metadata), else None.

        The path is also resolved below the root (symlinks followed), so a file replaced
        by a symlink after indexing is refused too.
        """
        state, root = self._current()
        with self._lock:
            known = relative in state.files
        if root is None or not known:
            return None
        try:
            path = resolve_inside(root, relative)
        except ValueError:
            return None
        return path if _regular_file(root / relative) is not None else None

    def files_on_disk(self, relatives: Iterable[str]) -> Dict[str, Path]:
        """:meth:`file_path` for many files at once (a zip of thousands): the indexed ones
        that are regular files now, by relative path. The root is resolved once and each
        day folder checked once (a real folder, no symlink), so each file costs one
        ``lstat``; our names hold no ``/`` or ``..``, so the paths stay below the root."""
        state, root = self._current()
        with self._lock:
            known = [rel for rel in relatives if rel in state.files]
        if root is None:
            return {}
        try:
            base = root.resolve()
        except OSError:
            return {}
        days: Dict[str, bool] = {}
        found: Dict[str, Path] = {}
        for rel in known:
            day, _, name = rel.partition("/")
            if day not in days:
                try:
                    days[day] = is_day_folder_name(day) and stat.S_ISDIR(
                        os.lstat(base / day).st_mode
                    )
                except OSError:
                    days[day] = False
            if days[day] and "/" not in name and _regular_file(base / day / name) is not None:
                found[rel] = base / day / name
        return found

    def print_files(
        self, pid: str, thumbnails: bool = False, camera: Optional[str] = None
    ) -> Optional[List[Tuple[str, Path]]]:
        """``(relative path, absolute path)`` of a print's images and videos (only
        ``camera``'s when one is named), toolpaths and metadata, by layer; None for an
        unknown print."""
        state, root = self._current()
        with self._lock:
            entry = state.prints.get(pid)
            if entry is None or root is None:
                return None
            files: List[Tuple[str, Path]] = []
            for layer in entry.ordered():
                for image in layer["images"]:
                    if camera is not None and image["camera"] != camera:
                        continue
                    files.append((image["path"], root / image["path"]))
                    if thumbnails and image["thumbnail"]:
                        files.append((image["thumbnail"], root / image["thumbnail"]))
                for extra in _layer_files(layer):
                    files.append((extra, root / extra))
                files.append((layer["metadata"], root / layer["metadata"]))
            for video in state.videos.values():
                if video["print_id"] == pid and camera in (None, video["camera"]):
                    files.append((video["path"], root / video["path"]))
                    files.append((video["metadata"], root / video["metadata"]))
            return files

    def counts(self) -> Tuple[int, int]:
        """(prints, files) currently indexed."""
        state, _root = self._current()
        with self._lock:
            return len(state.prints), len(state.files)

    # ---- deleting --------------------------------------------------------------------

    def delete_print(self, pid: str) -> Optional[DeleteResult]:
        """Delete a print's files (images, thumbnails, metadata) and empty day folders;
        None for an unknown print."""
        state, root = self._current()
        with self._lock:
            entry = state.prints.get(pid)
            if entry is None or root is None:
                return None
            relatives = [rel for rel, owner in state.files.items() if owner == pid]
            for key in list(entry.layers):
                state.remove(key)
            for key in [k for k, v in state.videos.items() if v["print_id"] == pid]:
                state.remove_video(key)
        return _unlink(root, relatives)


def _unlink(root: Path, relatives: List[str]) -> DeleteResult:
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
