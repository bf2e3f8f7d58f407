"""The words the plugin's parts exchange: states, steps, phases, outcomes, sources.

Pure module. Each is a string enum, so a member equals its text ("completed" ==
``Outcome.COMPLETED``), is written to JSON and the UI as that text, and prints as it.
The tab's JavaScript reads the same texts (static/js/layercapture_tab.js).
"""

from __future__ import annotations

from enum import Enum


class _Text(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


class StopMode(_Text):
    """How the job is stopped for a capture."""

    PAUSE = "pause"  # OctoPrint's pause: the user's pause and resume scripts run
    HOLD = "hold"  # OctoPrint's job hold: no scripts, no notifications


class State(_Text):
    """What the plugin is doing, as the live status tells the UI."""

    IDLE = "idle"
    WAITING = "waiting"  # armed, waiting for a target layer
    CAPTURING = "capturing"
    CAPTURED = "captured"  # a layer's files are written
    ERROR = "error"
    UNSUPPORTED = "unsupported"  # e.g. an SD card print


class Step(_Text):
    """Where a capture sequence is, for the progress in the UI."""

    STOPPING = "stopping"
    MOVING = "moving"
    CAPTURING = "capturing"
    RETURNING = "returning"
    RESUMING = "resuming"


class Phase(_Text):
    """What a sequence's time is spent on; consecutive, they add up to the total."""

    STOP = "stop"
    MOVES = "moves"
    SETTLE = "settle"
    CAPTURE = "capture"
    RETURN = "return"
    RESUME = "resume"


PHASES = tuple(Phase)


class Outcome(_Text):
    """How a capture sequence ended."""

    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    INTERRUPTED = "interrupted"  # cancel, disconnect, shutdown: nothing more was sent
    LEFT_PAUSED_BY_USER = "left_paused_by_user"
    NOT_CONTINUED = "not_continued"  # the head could not be brought back, or no resume


class StopSource(_Text):
    """Where a sequence's stop position came from."""

    PAUSE_EVENT = "pause_event"
    POSITION_REPORT = "position_report"
    TRACKER = "tracker"
    UNKNOWN = "unknown"


class RenderState(_Text):
    """Where a video render is (analysis.video): queued, then, its turn come, waiting while
    the gate is closed, preparing its frames, rendering (paused whenever the gate closes);
    it ends done, failed (with the exact error) or cancelled."""

    QUEUED = "queued"
    WAITING = "waiting"  # its turn, but the gate is closed
    PREPARING = "preparing"
    RENDERING = "rendering"
    PAUSED = "paused"  # the gate closed while it ran
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


RENDER_ENDED = (RenderState.DONE, RenderState.FAILED, RenderState.CANCELLED)
