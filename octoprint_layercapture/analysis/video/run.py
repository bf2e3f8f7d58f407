"""One render job from its turn to its end: frames laid out, ffmpeg run, videos saved.

Pure module (stdlib, this package and :mod:`store`). A fresh :class:`RenderRun` per job, on
the renderer's thread (:mod:`.renderer`, the :class:`RunHost` here): it waits at the gate
before each step and each frame, stops ffmpeg while the gate is closed, renders every
video to a temporary name and renames them (frames file first) only when all succeeded;
whatever happens, it removes its frame folders and temporary files, and every failure
ends the job through one place with the message the user sees.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol

from ...store.names import RENDER_WORK_PREFIX, is_day_folder_name
from ...vocabulary import RenderState
from .ffmpeg import FfmpegSettings, error_summary, ffmpeg_settings
from .files import frames_document, save_video
from .frames import PreparedVideo, prepare_video
from .jobs import GalleryPort, RenderCancelled, RenderConfig, RenderJob, RestartVideo
from .plan import VideoError, plan_videos
from .process import CAN_SUSPEND, FfmpegProcess


class RunHost(Protocol):
    """What a run needs of the renderer that owns the job (its lock guards the job)."""

    @property
    def stopping(self) -> bool: ...

    def set(self, job: RenderJob, **fields: Any) -> None: ...

    def push(
        self, job: RenderJob, force: bool = False, snapshot: Optional[Dict[str, Any]] = None
    ) -> None: ...

    def gate(self) -> Optional[str]: ...

    def wait(self, seconds: float) -> None: ...

    def holds(self) -> int: ...

    def attach(self, process: FfmpegProcess, holds: int) -> None: ...

    def detach(self) -> None: ...

    def finish(
        self, job: RenderJob, state: RenderState, error: Optional[str]
    ) -> Dict[str, Any]: ...


class RenderRun:
    def __init__(
        self,
        host: RunHost,
        job: RenderJob,
        gallery: GalleryPort,
        config: Callable[[], RenderConfig],
        work_root: Path,
        logger: logging.Logger,
        plugin_version: str,
        niceness: int,
        poll: float,
    ) -> None:
        self._host = host
        self._job = job
        self._gallery = gallery
        self._config = config
        self._work_root = work_root
        self._logger = logger
        self._plugin_version = plugin_version
        self._niceness = niceness
        self._poll = poll

    def run(self) -> Dict[str, Any]:
        """Renders the job; its final snapshot (done, failed or cancelled)."""
        job = self._job
        work: Optional[Path] = None
        prepared: List[PreparedVideo] = []
        state, error = RenderState.FAILED, None
        try:
            self._wait_for_gate(job, RenderState.WAITING, RenderState.PREPARING)
            self._host.set(job, state=RenderState.PREPARING, started_at=time.time())
            self._host.push(job, force=True)
            config = self._config()
            ffmpeg = ffmpeg_settings(config.ffmpeg, config.bitrate, config.threads)
            layers = self._gallery.print_layers(job.print_id)
            summary = self._gallery.print_summary(job.print_id)
            root = self._gallery.root
            if layers is None or summary is None or root is None:
                raise VideoError("the print is gone from the gallery (deleted?)")
            plans = plan_videos(layers, job.target)
            work = self._work_root / f"{RENDER_WORK_PREFIX}{job.id}-{secrets.token_hex(4)}"
            work.mkdir(parents=True)
            day = str(plans[0].inputs[0].frames[0].metadata).split("/", 1)[0]
            if not is_day_folder_name(day):
                raise VideoError(f"the print's first layer is not in a day folder ({day!r})")
            folder = root / day
            for number, plan in enumerate(plans):
                self._host.set(job, current=plan.label())
                prepared.append(
                    prepare_video(
                        plan,
                        number,
                        job.print_id,
                        root,
                        folder,
                        work,
                        ffmpeg,
                        config.fps,
                        config.hold_seconds,
                        lambda: self._wait_for_gate(job, RenderState.PAUSED, RenderState.PREPARING),
                        self._logger,
                    )
                )
            self._host.set(
                job,
                frames_total=sum(p.frame_count for p in prepared),
                videos_total=len(prepared),
            )
            for item in prepared:
                self._encode_until_done(job, item)
            self._check_cancel(job)
            self._commit(job, prepared, summary, ffmpeg, config)
            state = RenderState.DONE
        except RenderCancelled:
            state = RenderState.CANCELLED
        except VideoError as exc:
            error = str(exc)
        except Exception as exc:
            self._logger.exception(f"Video render {job.id} failed")
            error = f"unexpected error: {exc}"
        finally:
            for item in prepared:
                with contextlib.suppress(FileNotFoundError):
                    item.temp.unlink()
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            snapshot = self._host.finish(job, state, error)
            self._host.push(job, force=True, snapshot=snapshot)
        self._log_result(snapshot)
        return snapshot

    def _log_result(self, job: Dict[str, Any]) -> None:
        what = f"Video render {job['id']} of print {job['print_id']}"
        if job["state"] == RenderState.DONE:
            self._logger.info(
                f"{what}: {len(job['videos'])} video(s), {job['frames_total']} frames in "
                f"{job['render_seconds']} s"
            )
        elif job["state"] == RenderState.CANCELLED:
            self._logger.info(f"{what} cancelled, nothing written")
        else:
            self._logger.warning(f"{what} failed, nothing written: {job['error']}")

    # ---- the gate ----------------------------------------------------------------------

    def _check_cancel(self, job: RenderJob) -> None:
        if job.cancel.is_set() or self._host.stopping:
            raise RenderCancelled()

    def _wait_for_gate(self, job: RenderJob, waiting_state: RenderState, then: RenderState) -> None:
        """Returns once rendering may go on; meanwhile the job is in ``waiting_state`` with
        the reason, afterwards in ``then``."""
        waited = False
        while True:
            self._check_cancel(job)
            reason = self._host.gate()
            if reason is None:
                break
            if not waited or job.reason != reason:
                self._host.set(job, state=waiting_state, reason=reason)
                self._host.push(job, force=True)
            waited = True
            self._host.wait(self._poll * 4)
        if waited:
            self._host.set(job, state=then, reason=None)
            self._host.push(job, force=True)

    # ---- ffmpeg ------------------------------------------------------------------------

    def _encode_until_done(self, job: RenderJob, item: PreparedVideo) -> None:
        while True:
            try:
                self._encode(job, item)
                return
            except RestartVideo:
                with contextlib.suppress(FileNotFoundError):
                    item.temp.unlink()
                self._wait_for_gate(job, RenderState.PAUSED, RenderState.RENDERING)

    def _encode(self, job: RenderJob, item: PreparedVideo) -> None:
        done_before = job.frames_done
        holds = self._host.holds()
        self._wait_for_gate(job, RenderState.PAUSED, RenderState.RENDERING)
        self._host.set(job, state=RenderState.RENDERING, current=item.plan.label())
        self._host.push(job, force=True)
        process = FfmpegProcess(item.command, item.log, item.progress, self._niceness)
        self._host.attach(process, holds)  # stopped at once if a capture began meanwhile
        try:
            code = self._watch(job, process, item, done_before)
        finally:
            self._host.detach()
            process.kill()
            self._host.set(job, cpu_seconds=job.cpu_seconds + (process.cpu_seconds or 0.0))
        if code != 0:
            raise VideoError(
                f"ffmpeg failed on the {item.plan.label()} (exit code {code}): "
                f"{error_summary(process.errors()) or 'no message'}"
            )
        written = process.frames()
        if written is not None and written != item.frame_count:
            raise VideoError(
                f"ffmpeg wrote {written} frames for the {item.plan.label()}, "
                f"{item.frame_count} were planned"
            )
        if not item.temp.is_file() or item.temp.stat().st_size == 0:
            raise VideoError(f"ffmpeg wrote no file for the {item.plan.label()}")
        self._host.set(
            job, frames_done=done_before + item.frame_count, videos_done=job.videos_done + 1
        )
        self._host.push(job)

    def _watch(self, job: RenderJob, process: FfmpegProcess, item: PreparedVideo, base: int) -> int:
        """Follows ffmpeg until it exits: progress, cancel, and the gate (stop/continue)."""
        while True:
            code = process.poll()
            if code is not None:
                return code
            self._host.wait(self._poll)
            self._check_cancel(job)
            reason = self._host.gate()
            if reason is not None and not CAN_SUSPEND:
                raise RestartVideo()
            if reason is not None:
                process.suspend()
            else:
                process.resume()
            state = RenderState.PAUSED if process.suspended else RenderState.RENDERING
            changed = state != job.state
            frames = min(process.frames() or 0, item.frame_count)
            self._host.set(job, state=state, reason=reason, frames_done=base + frames)
            self._host.push(job, force=changed)

    # ---- committing ----------------------------------------------------------------------

    def _commit(
        self,
        job: RenderJob,
        prepared: List[PreparedVideo],
        summary: Dict[str, Any],
        ffmpeg: FfmpegSettings,
        config: RenderConfig,
    ) -> None:
        """Each video under its final name, its frames file first."""
        about = {
            "rendered_at": datetime.now().isoformat(timespec="seconds"),
            "render_seconds": round(time.time() - (job.started_at or time.time()), 3),
            "ffmpeg": ffmpeg.path,
            "bitrate": ffmpeg.bitrate,
            "threads": ffmpeg.threads,
            "plugin_version": self._plugin_version,
        }
        for item in prepared:
            document = frames_document(
                item.plan,
                item.name,
                summary,
                item.size,
                config.fps,
                item.hold_frames,
                config.hold_seconds,
                item.layout,
                extra=about,
            )
            try:
                frames_path = save_video(item.temp, item.folder / item.name, document)
            except OSError as exc:
                raise VideoError(f"could not save the {item.plan.label()}: {exc}") from exc
            self._host.set(job, videos=[*job.videos, f"{item.folder.name}/{item.name}"])
            try:
                self._gallery.add_video(frames_path)
            except Exception:
                self._logger.exception(f"Could not add {item.name} to the gallery")
