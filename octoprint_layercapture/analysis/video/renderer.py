"""Renders a print's videos on one named background thread, one job at a time.

Pure module (stdlib, this package and :mod:`store`): the plugin hands it the gallery
(:class:`jobs.GalleryPort`), OctoPrint's ffmpeg settings and a gate
(:class:`jobs.RenderGate`). The rules:

* **One at a time**: jobs queue (at most :data:`MAX_QUEUED`, one per print); the thread
  :data:`THREAD_NAME` runs them in order.
* **Never while a capture sequence runs**, and not while a print runs unless allowed:
  ``may_render()`` gives the reason to wait, or None. Before ffmpeg starts, a job waits;
  while it runs, ffmpeg is stopped (SIGSTOP) and continued (SIGCONT) once the gate opens
  again. :meth:`VideoRenderer.hold_now` stops it at once (the capture worker calls it when a
  layer triggers a capture, on the comm thread, before the head moves). Where SIGSTOP does
  not exist, the video is started again once the gate opens.
* **Low priority**: ffmpeg runs at niceness :data:`RENDER_NICENESS`.
* **Nothing half-written**: each video goes to a temporary name beside its final one; only
  when every video of the job is rendered are they renamed (frames file first), so a failed
  or cancelled job leaves the print's videos as they were and no temporary file.
* **Progress**: frames done / total through ``on_update`` at most every
  ``push_interval`` seconds, and at every change of state; ffmpeg's exact error on failure.

This module is the queue, its lock and its thread; :mod:`.run` renders one job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional

from ...vocabulary import RenderState
from .ffmpeg import ffmpeg_problem
from .files import remove_leftovers
from .jobs import (
    GalleryPort,
    RenderConfig,
    RenderJob,
    RenderRefused,
)
from .plan import TARGET_ALL, RenderTarget, target_problem
from .process import RENDER_NICENESS, FfmpegProcess
from .run import RenderRun

THREAD_NAME = "layercapture-video"
MAX_QUEUED = 20
RECENT_JOBS = 20

_logger = logging.getLogger("octoprint.plugins.layercapture.analysis.renderer")


class VideoRenderer:
    """The render queue and its thread; see the module docstring."""

    def __init__(
        self,
        gallery: GalleryPort,
        config: Callable[[], RenderConfig],
        work_root: Path,
        may_render: Callable[[], Optional[str]],
        on_update: Callable[[Dict[str, Any]], None],
        logger: Optional[logging.Logger] = None,
        plugin_version: str = "",
        push_interval: float = 0.5,
        poll_interval: float = 0.25,
        niceness: int = RENDER_NICENESS,
    ) -> None:
        self._gallery = gallery
        self._config = config
        self._work_root = Path(work_root)
        self._may_render = may_render
        self._on_update = on_update
        self._logger = logger or _logger
        self._plugin_version = plugin_version
        self._push_interval = push_interval
        self._poll = poll_interval
        self._niceness = niceness
        self._lock = threading.Lock()  # guards the fields below and every RenderJob; held briefly
        self._wake = threading.Condition(self._lock)
        self._queue: Deque[RenderJob] = deque()
        self._current: Optional[RenderJob] = None
        self._recent: Deque[RenderJob] = deque(maxlen=RECENT_JOBS)
        self._process: Optional[FfmpegProcess] = None
        self._holds = 0  # hold_now calls: one during an ffmpeg start stops the new process
        self._next_id = 1
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._last_push = 0.0

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancels the running job and the queued ones, then ends the thread."""
        with self._lock:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            for job in dropped:
                self._finish(job, RenderState.CANCELLED, None)
            snapshots = [job.snapshot() for job in dropped]
            if self._current is not None:
                self._current.cancel.set()
            self._wake.notify_all()
            thread = self._thread
        for job, snapshot in zip(dropped, snapshots):
            self.push(job, force=True, snapshot=snapshot)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._logger.warning(f"{THREAD_NAME} did not stop within {timeout:g} s")

    # ---- requests ----------------------------------------------------------------------

    def ffmpeg_problem(self) -> Optional[str]:
        """Why OctoPrint's ffmpeg cannot render now (None: it can)."""
        return ffmpeg_problem(self._config().ffmpeg)

    def submit(self, print_id: str, target: RenderTarget, auto: bool = False) -> Dict[str, Any]:
        """Queues a render; :class:`RenderRefused` says why not (nothing is queued then)."""
        problem = self.ffmpeg_problem()
        if problem is not None:
            raise RenderRefused(409, problem)
        layers = self._gallery.print_layers(print_id)
        summary = self._gallery.print_summary(print_id)
        if layers is None or summary is None:
            raise RenderRefused(404, "no such print")
        problem = target_problem(layers, target)
        if problem is not None:
            raise RenderRefused(400, problem)
        with self._lock:
            if self._stopping or not self.running:
                raise RenderRefused(503, "the video renderer is not running (shutting down?)")
            busy = self._active_for(print_id)
            if busy is not None:
                raise RenderRefused(
                    409,
                    f"a render of this print is already {busy.state} (job {busy.id}); "
                    "cancel it first or wait for it",
                )
            if len(self._queue) >= MAX_QUEUED:
                raise RenderRefused(
                    429, f"{len(self._queue)} renders are queued (at most {MAX_QUEUED})"
                )
            job = RenderJob(
                self._next_id, print_id, str(summary.get("gcode_file") or ""), target, auto
            )
            self._next_id += 1
            self._queue.append(job)
            self._wake.notify_all()
            snapshot = job.snapshot()
        self._logger.info(
            f"Video render {job.id} queued: {target.describe()} of print {print_id} "
            f"({job.gcode_file or 'unknown file'}){' after the print' if auto else ''}"
        )
        self.push(job, force=True, snapshot=snapshot)
        return snapshot

    def submit_after_print(self, print_id: str) -> None:
        """Queues all of a print's videos once it has ended (``video_render_after_print``);
        a refusal is logged: nobody waits for an answer."""
        try:
            self.submit(print_id, RenderTarget(TARGET_ALL), auto=True)
        except RenderRefused as exc:
            self._logger.warning(f"Videos of print {print_id} not rendered: {exc.message}")

    def cancel(self, job_id: int) -> Optional[Dict[str, Any]]:
        """Cancels a queued or running job; None when no such job is active."""
        with self._lock:
            job = next((j for j in self._active() if j.id == job_id), None)
            if job is None:
                return None
            self._cancel_locked(job)
            snapshot = job.snapshot()
        self.push(job, force=True, snapshot=snapshot)
        return snapshot

    def cancel_print(self, print_id: str, timeout: float = 10.0) -> bool:
        """Cancels every render of ``print_id`` and waits until none runs (its files are
        about to be deleted); False when one is still running after ``timeout``."""
        with self._lock:
            jobs = [j for j in self._active() if j.print_id == print_id]
            for job in jobs:
                self._cancel_locked(job)
            snapshots = [job.snapshot() for job in jobs]
        for job, snapshot in zip(jobs, snapshots):
            self.push(job, force=True, snapshot=snapshot)
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._current is not None and self._current.print_id == print_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, self._poll))
        return True

    def _cancel_locked(self, job: RenderJob) -> None:
        job.cancel.set()
        if job in self._queue:
            self._queue.remove(job)
            self._finish(job, RenderState.CANCELLED, None)
        self._wake.notify_all()

    def hold_now(self) -> None:
        """Stops a running ffmpeg at once (a capture is about to move the head). Cheap:
        called on OctoPrint's comm thread. The thread continues it once the gate opens."""
        with self._lock:
            self._holds += 1
            if self._process is not None:
                self._process.suspend()
            self._wake.notify_all()

    def wake(self) -> None:
        """Look at the gate again now (the capture worker calls it when a sequence ends)."""
        with self._lock:
            self._wake.notify_all()

    # ---- state -------------------------------------------------------------------------

    def _active(self) -> List[RenderJob]:
        current = [self._current] if self._current is not None else []
        return current + list(self._queue)

    def _active_for(self, print_id: str) -> Optional[RenderJob]:
        return next((j for j in self._active() if j.print_id == print_id), None)

    def jobs(self) -> Dict[str, Any]:
        """The running job, the queue and the last finished ones (newest first)."""
        with self._lock:
            return {
                "current": None if self._current is None else self._current.snapshot(),
                "queue": [job.snapshot() for job in self._queue],
                "recent": [job.snapshot() for job in reversed(self._recent)],
            }

    def job_for(self, print_id: str) -> Optional[Dict[str, Any]]:
        """The active render of ``print_id``, else its last finished one, else None."""
        with self._lock:
            job = self._active_for(print_id) or next(
                (j for j in reversed(self._recent) if j.print_id == print_id), None
            )
            return None if job is None else job.snapshot()

    # ---- what a run needs (RunHost) --------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    def set(self, job: RenderJob, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(job, key, value)

    def gate(self) -> Optional[str]:
        return self._may_render()

    def wait(self, seconds: float) -> None:
        """At most ``seconds``; less when woken (a cancel, the gate looked at again)."""
        with self._lock:
            self._wake.wait(seconds)

    def holds(self) -> int:
        with self._lock:
            return self._holds

    def attach(self, process: FfmpegProcess, holds: int) -> None:
        """The running ffmpeg, which :meth:`hold_now` stops; stopped at once when a hold
        came since ``holds`` was read (a capture began while it was starting)."""
        with self._lock:
            self._process = process
            if self._holds != holds:
                process.suspend()

    def detach(self) -> None:
        with self._lock:
            self._process = None

    def finish(self, job: RenderJob, state: RenderState, error: Optional[str]) -> Dict[str, Any]:
        with self._lock:
            self._finish(job, state, error)
            return job.snapshot()

    def _finish(self, job: RenderJob, state: RenderState, error: Optional[str]) -> None:
        """Called with the lock held."""
        job.state = state
        job.error = error
        job.reason = None
        job.finished_at = time.time()
        self._recent.append(job)

    def push(
        self, job: RenderJob, force: bool = False, snapshot: Optional[Dict[str, Any]] = None
    ) -> None:
        """Pushes the job's state (``snapshot``: as it was taken under the lock, so a state
        the thread has already left is still reported)."""
        now = time.monotonic()
        if not force and now - self._last_push < self._push_interval:
            return
        self._last_push = now
        if snapshot is None:
            with self._lock:
                snapshot = job.snapshot()
        try:
            self._on_update(snapshot)
        except Exception:
            self._logger.exception("Could not push the video render's progress")

    # ---- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._remove_leftovers()
        except Exception:
            self._logger.exception("Could not remove the files of interrupted renders")
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._current = job
            run = RenderRun(
                self,
                job,
                self._gallery,
                self._config,
                self._work_root,
                self._logger,
                self._plugin_version,
                self._niceness,
                self._poll,
            )
            try:
                run.run()
            except Exception:  # the run handles its own; this keeps the thread alive
                self._logger.exception(f"Video render {job.id} failed unexpectedly")
            finally:
                with self._lock:
                    self._current = None
                    self._wake.notify_all()

    # ---- leftovers of an interrupted run -------------------------------------------------

    def _remove_leftovers(self) -> None:
        root = self._gallery.root
        removed = remove_leftovers(self._work_root, root)
        if removed:
            self._logger.info(f"Removed {removed} leftover(s) of interrupted video renders")
