"""One ffmpeg process of a render: started niced, stopped and continued, followed.

Pure module (stdlib only). The renderer's thread owns the process; :meth:`suspend` may
also come from OctoPrint's comm thread (a capture is about to move the head), so the
signalling methods only send a signal and never wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import List, Optional

from .ffmpeg import progress_frames

RENDER_NICENESS = 10  # like nice(1)'s default: OctoPrint's own threads come first

_SIGSTOP = getattr(signal, "SIGSTOP", None)
_SIGCONT = getattr(signal, "SIGCONT", None)
CAN_SUSPEND = _SIGSTOP is not None and _SIGCONT is not None


def lower_priority(pid: int, niceness: int = RENDER_NICENESS) -> None:
    """Renice process ``pid`` and each of its threads to at least ``niceness`` (best effort:
    a process may not lower its children's niceness below its own)."""
    setpriority = getattr(os, "setpriority", None)
    getpriority = getattr(os, "getpriority", None)
    if setpriority is None or getpriority is None:
        return
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        tasks = [pid]
    for task in tasks:
        with contextlib.suppress(OSError):
            setpriority(os.PRIO_PROCESS, task, max(niceness, getpriority(os.PRIO_PROCESS, task)))


def read_tail(path: Path, size: int = 4096) -> str:
    """The end of a file ffmpeg is appending to ("" before it exists)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


class FfmpegProcess:
    """ffmpeg running ``command``: stderr to ``log``, its ``-progress`` file at ``progress``."""

    def __init__(
        self, command: List[str], log: Path, progress: Path, niceness: int = RENDER_NICENESS
    ) -> None:
        self.log = log
        self.progress = progress
        self._lock = threading.Lock()  # suspend() may come from another thread
        self._suspended = False
        self._code: Optional[int] = None
        self.cpu_seconds: Optional[float] = None  # user + system, once it has exited
        with open(log, "wb") as handle:
            self._process = subprocess.Popen(  # noqa: S603 - a list of arguments, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=handle,
                close_fds=True,
            )
        lower_priority(self._process.pid, niceness)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def suspended(self) -> bool:
        return self._suspended

    def poll(self) -> Optional[int]:
        """Its exit code once it has exited (and its CPU time is known), else None."""
        return self._reap(block=False)

    def _reap(self, block: bool) -> Optional[int]:
        if self._code is not None:
            return self._code
        wait4 = getattr(os, "wait4", None)
        if wait4 is None:  # no rusage here: the exit code only
            code = self._process.wait() if block else self._process.poll()
            self._code = code
            return code
        try:
            pid, status, usage = wait4(self._process.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere
            self._code = self._process.poll()
            return self._code
        if pid == 0:
            return None
        self._code = os.waitstatus_to_exitcode(status)
        self._process.returncode = self._code  # so Popen does not wait for it again
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        return self._code

    def suspend(self) -> None:
        """SIGSTOP (no CPU until :meth:`resume`); nothing where that does not exist."""
        with self._lock:
            # not Popen.poll(): that would reap it on the caller's thread, and its CPU time
            # with it (a signal to an exited, unreaped process does nothing)
            if self._suspended or _SIGSTOP is None or self._code is not None:
                return
            with contextlib.suppress(OSError):
                self._process.send_signal(_SIGSTOP)
                self._suspended = True

    def resume(self) -> None:
        with self._lock:
            if not self._suspended or _SIGCONT is None:
                return
            with contextlib.suppress(OSError):
                self._process.send_signal(_SIGCONT)
            self._suspended = False

    def kill(self) -> None:
        """Ends it at once (SIGKILL also ends a stopped process) and waits for it."""
        with self._lock:
            if self._code is None:
                with contextlib.suppress(OSError):
                    self._process.kill()
        self._reap(block=True)

    def frames(self) -> Optional[int]:
        """Frames written so far, from the progress file (None before the first report)."""
        return progress_frames(read_tail(self.progress))

    def errors(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")
