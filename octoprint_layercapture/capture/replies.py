"""Reading the printer's answer to the sequence's move confirmation (wait command + M114).

The sequence confirms each move with a wait command (``M400`` or ``G4 P0``, or none when
polling) followed by ``M114``. The plugin's ``gcode.received`` hook feeds every line the
printer sends while such a confirmation is out to a :class:`ReplyWatch`, which finds the
position report in any of the usual formats, and notices answers that can never become one:

* Marlin, Prusa and the virtual printer:  ``X:10.00 Y:0.00 Z:0.20 E:1.00 Count X:800 ...``,
  with the ``ok`` on the same line, on the next line, or before (``okBeforeCommandOutput``);
* RepRapFirmware: ``X:10.000 Y:0.000 Z:0.200 E:1.0 E0:1.0 Count 800 0 80 Machine ...``, and
  its older ``E0:`` only form;
* Klipper, Repetier: ``X:10.000 Y:0.000 Z:0.200 E:1.000``;
* Smoothieware: ``ok C: X:10.0000 Y:0.0000 Z:0.2000`` (no E at all).

An answer the sequence cannot use ends the wait at once instead of after the movement
timeout: the firmware calls our command unknown, or it acknowledges M114 (``ok``) and no
position report follows within a short grace period (the report may come after the ``ok``).

Pure: imports nothing from OctoPrint; the caller passes the time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Optional

from ..settings import WAIT_FOR_MOVES
from .moves import POSITION_QUERY
from .ports import Position

# How long after M114's "ok" a position report may still come (firmware that answers "ok"
# first sends the report right behind it); generous, since lines arrive in one burst.
REPLY_GRACE = 1.0

# Kinds of received lines
POSITION = "position"
ACK = "ok"
UNKNOWN_COMMAND = "unknown_command"
COMMUNICATION = "communication"  # resend requests and line/checksum errors
CHATTER = "chatter"  # busy, wait, temperatures, echo: and action lines
OTHER = "other"

# Python-formatted reports (the virtual printer's) may use an exponent: 5.551115123125783e-17
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POSITION = re.compile(
    rf"X:\s*(?P<x>{_NUMBER})[\s,]*Y:\s*(?P<y>{_NUMBER})[\s,]*Z:\s*(?P<z>{_NUMBER})"
    rf"(?:[\s,]*E\d*:\s*(?P<e>{_NUMBER}))?"
)
_UNKNOWN = re.compile(r"\b(?:unknown|unsupported|unrecognized|invalid|bad)\b.*\bcommand", re.I)
_COMMUNICATION = re.compile(
    r"^(?:resend|rs\b)|checksum|line ?number|last line|expected line", re.IGNORECASE
)
_CHATTER = re.compile(
    r"^(?:wait$|busy:|echo:busy|//|echo:|T:|T\d:|B:|@:|SD printing|Not SD printing)"
)
_MAX_LINES_KEPT = 3
_MAX_LINE_LENGTH = 120


@dataclass(frozen=True)
class Reply:
    """One received line: its kind and, for a position report, the position."""

    kind: str
    text: str
    position: Optional[Position] = None


def parse_position(line: str) -> Optional[Position]:
    """The first X/Y/Z (and E) report in ``line``, or None; X, Y and Z must all be there."""
    match = _POSITION.search(line)
    if match is None:
        return None
    try:
        x, y, z = (float(match.group(axis)) for axis in ("x", "y", "z"))
        e = None if match.group("e") is None else float(match.group("e"))
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (x, y, z)):
        return None
    return Position(x, y, z, e if e is not None and math.isfinite(e) else None)


def classify(line: str) -> Reply:
    text = line.strip()
    position = parse_position(text) if "X:" in text else None
    if position is not None:
        return Reply(POSITION, text, position)
    if _UNKNOWN.search(text):
        return Reply(UNKNOWN_COMMAND, text)
    if text == "ok" or text.startswith("ok "):
        return Reply(ACK, text)
    if _COMMUNICATION.search(text):
        return Reply(COMMUNICATION, text)
    if not text or _CHATTER.match(text.lstrip()):
        return Reply(CHATTER, text)
    return Reply(OTHER, text)


class ReplyWatch:
    """The answer to one confirmation, fed line by line from OctoPrint's comm threads.

    :meth:`sent` is called when each of our commands goes out; lines that arrive before
    the first one belong to earlier commands and are ignored. The caller serialises calls.
    """

    def __init__(self) -> None:
        self.position: Optional[Position] = None
        self.problem: Optional[str] = None
        self.acknowledged_at: Optional[float] = None  # M114's "ok" came, no report yet
        self._current: Optional[str] = None  # which of ours is out: wait command or M114
        self._unread: List[str] = []

    @property
    def listening(self) -> bool:
        return self._current is not None and self.position is None and self.problem is None

    def sent(self, gcode: str) -> None:
        self._current = gcode
        self.acknowledged_at = None

    def feed(self, line: str, now: float) -> bool:
        """Reads one received line; True when it settled the answer (position or problem)."""
        if not self.listening:
            return False
        reply = classify(line)
        querying = self._current == POSITION_QUERY
        if reply.kind == UNKNOWN_COMMAND:
            self.problem = self._unknown_command(reply.text)
        elif not querying:
            return False
        elif reply.kind == POSITION:
            self.position = reply.position
        elif reply.kind == ACK:
            self.acknowledged_at = now
            if reply.text != "ok":  # the answer may ride on the ok: "ok Position 5/6/7"
                self._keep(reply.text)
        elif reply.kind == COMMUNICATION:
            self.acknowledged_at = None  # the command is sent again; its answer comes later
        elif reply.kind == OTHER:
            self._keep(reply.text)
        return not self.listening

    def expired(self, now: float, grace: float = REPLY_GRACE) -> bool:
        """Whether M114 was acknowledged ``grace`` seconds ago and no report came."""
        ack = self.acknowledged_at
        return self.listening and ack is not None and now >= ack + grace

    def unrecognised(self) -> str:
        """Why :meth:`expired` answers: for the error the sequence records."""
        if self._unread:
            seen = " / ".join(repr(line) for line in self._unread)
            return f"the printer answered {POSITION_QUERY} with {seen}, not a position report"
        return f"the printer acknowledged {POSITION_QUERY} without a position report"

    def _keep(self, text: str) -> None:
        if len(self._unread) < _MAX_LINES_KEPT:
            self._unread.append(_shorten(text))

    def _unknown_command(self, text: str) -> str:
        command = self._current or "?"
        problem = f"the printer does not know {command}: it answered {_shorten(text)!r}"
        if command == POSITION_QUERY:
            return problem
        others = [w for w in WAIT_FOR_MOVES if w.split()[0] != command]
        return f"{problem}; set wait_for_moves to " + " or ".join(repr(w) for w in others)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_LINE_LENGTH else text[: _MAX_LINE_LENGTH - 3] + "..."
