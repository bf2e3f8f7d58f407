"""The named thread that stitches toolhead layers once their files are written.

The image writer hands each saved layer's metadata file here (:meth:`MosaicWorker.submit`);
layers are stitched one after another, never while a capture is queued or has the head
away: the thread waits before each layer and at every step of the stitching
(``wait_idle``, the capture worker's), so the capture sequence never shares the processor
with it. Each layer's progress and result are pushed to the browsers; the finished metadata
goes to ``on_done`` (the gallery index). Importable without numpy.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ...store.names import parse_metadata_name
from ...store.records import read_metadata
from .layer import MosaicOptions, failed, make_mosaic, remove_files, save_record, toolhead_mounting

THREAD_NAME = "layercapture-mosaic"
WAIT_STEP = 0.5  # s between looks at whether the head is back


class _Stopping(Exception):
    pass


class MosaicWorker:
    def __init__(
        self,
        options: Callable[[], MosaicOptions],
        wait_idle: Callable[[float], bool],
        on_done: Callable[[Path], object],
        push: Callable[[Dict[str, Any]], None],
        logger: Optional[logging.Logger] = None,
    ) -> None:
        self._options = options
        self._wait_idle = wait_idle
        self._on_done = on_done
        self._push = push
        self._logger = logger or logging.getLogger("octoprint.plugins.layercapture.mosaic")
        self._queue: queue.Queue[Optional[Path]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the thread after the step it is at; layers still queued are left pending."""
        self._stopping.set()
        self._queue.put(None)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._logger.warning(f"{THREAD_NAME} did not stop within {timeout:g} s")

    def submit(self, metadata_path: Path) -> None:
        """A layer just saved (the image writer's thread): queued when it needs a mosaic."""
        try:
            needed = toolhead_mounting(read_metadata(metadata_path)) is not None
        except (OSError, ValueError):
            return
        if needed:
            self._queue.put(Path(metadata_path))

    def _checkpoint(self) -> None:
        while not self._wait_idle(WAIT_STEP):
            if self._stopping.is_set():
                raise _Stopping()

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            if path is None or self._stopping.is_set():
                return
            try:
                self._checkpoint()
                self._layer(path)
            except _Stopping:
                return
            except Exception:
                self._logger.exception(f"{path.name}: the mosaic failed unexpectedly")

    def _layer(self, path: Path) -> None:
        parsed = parse_metadata_name(path.name)
        about = {
            "metadata": f"{path.parent.name}/{path.name}",
            "layer": None if parsed is None else parsed.layer,
        }
        options = self._options()

        def progress(done: int, total: int) -> None:
            self._push({**about, "state": "stitching", "done": done, "total": total})

        try:
            record = make_mosaic(path, options, self._checkpoint, progress)
        except (OSError, ValueError) as exc:
            self._logger.warning(f"{path.name}: no mosaic ({exc})")
            record = failed(f"the layer's files could not be read: {exc}")
        if record is None:
            return
        if not save_record(path, record, options.file_mode):
            remove_files(path, record)  # deleted meanwhile: leave nothing behind
            return
        self._on_done(path)
        departure = record.get("departure") or {}
        self._logger.info(
            f"{path.name}: mosaic {record['status']}"
            + (f" in {record.get('seconds')} s" if record.get("seconds") is not None else "")
            + (
                f", departure score {departure.get('score')}"
                if departure.get("score") is not None
                else ""
            )
            + (f" ({record['error']})" if record.get("error") else "")
        )
        self._push(
            {
                **about,
                "state": record["status"],
                "score": departure.get("score"),
                "warning": bool(departure.get("warning")),
                "regions": len(departure.get("regions") or []),
                "error": record.get("error"),
            }
        )
