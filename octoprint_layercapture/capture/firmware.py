"""What differs between printer firmwares, as far as a capture sequence cares. Pure module.

Motion modes
------------
Firmwares agree on G90/G91 for X, Y and Z, and disagree on what they do to E:

* ``marlin`` (Marlin 2.x and its forks, e.g. Creality's): G90/G91 set the E mode too; M82/M83
  set it alone. The E mode is that of the last of G90, G91, M82, M83.
* ``marlin_legacy`` (Marlin 1.x, Prusa-Firmware of the MK2/MK3) and ``klipper``: M82/M83 set
  an E flag that G90/G91 leave alone; E is relative while either G91 or M83 is in force.
* ``reprapfirmware``: only M82/M83 set the E mode; G91 leaves E absolute.

The plugin never has to know which of these a printer follows to give the job its modes back:
each firmware's modes are a function of the file's last XYZ-mode command, its last E-mode
command and their order, so replaying those two in their order (:meth:`ModeHistory.replay`)
restores any of them exactly. What it cannot restore is a mode the file never set (a start
macro's ``M83``): :class:`ModeHistory` says which modes the file established, and the
sequence changes only those. The family matters for reading the file (is ``E0.05`` an
extrusion?) and for what to ask the printer (soft limits, see below).

Soft limits
-----------
Marlin reports its software endstops on ``M211``; Klipper and RepRapFirmware don't (Klipper
answers a move beyond them with ``!! Move out of range``, which OctoPrint treats as a fatal
error). :func:`parse_soft_limits` reads Marlin's answer in the formats of 2.0 and 2.1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

AUTO = "auto"
MARLIN = "marlin"
MARLIN_LEGACY = "marlin_legacy"
KLIPPER = "klipper"
REPRAPFIRMWARE = "reprapfirmware"
FAMILIES = (MARLIN, MARLIN_LEGACY, KLIPPER, REPRAPFIRMWARE)
FIRMWARE_CHOICES = (AUTO, *FAMILIES)

# Families that answer M211 with their software endstops.
REPORTS_SOFT_LIMITS = (MARLIN, MARLIN_LEGACY)
SOFT_LIMITS_QUERY = "M211"

XYZ_ABSOLUTE, XYZ_RELATIVE = "G90", "G91"
E_ABSOLUTE, E_RELATIVE = "M82", "M83"
MODE_COMMANDS = (XYZ_ABSOLUTE, XYZ_RELATIVE, E_ABSOLUTE, E_RELATIVE)


def family_from_name(name: Optional[str]) -> Optional[str]:
    """The family of the firmware called ``name`` in its M115 answer (``FIRMWARE_NAME``),
    or None when it is not one we know."""
    text = (name or "").strip().lower()
    if not text:
        return None
    if "klipper" in text:
        return KLIPPER
    if "reprapfirmware" in text or "reprap firmware" in text or "duet" in text:
        return REPRAPFIRMWARE
    if "prusa-firmware" in text or "prusa firmware" in text:
        return MARLIN_LEGACY
    if "marlin" in text:
        version = re.search(r"marlin\D*(\d+)\.", text)
        if version is not None and int(version.group(1)) < 2:
            return MARLIN_LEGACY
        return MARLIN
    return None


def resolve_family(setting: str, reported_name: Optional[str]) -> Optional[str]:
    """The family to follow: the setting, or with ``auto`` the one the firmware's name
    tells (None: unknown, read the file as Marlin 2 does and trust only unambiguous modes)."""
    if setting in FAMILIES:
        return setting
    return family_from_name(reported_name)


@dataclass(frozen=True)
class ModeHistory:
    """The motion-mode commands a job has given, as far as they decide its modes now.

    ``xyz`` is the last of G90/G91, ``e`` the last of M82/M83 (None: never given), and
    ``e_last`` whether that E command came after the XYZ command.
    """

    xyz: Optional[str] = None
    e: Optional[str] = None
    e_last: bool = False

    def after(self, command: str) -> ModeHistory:
        """The history once ``command`` (one of :data:`MODE_COMMANDS`) has run."""
        if command in (XYZ_ABSOLUTE, XYZ_RELATIVE):
            return ModeHistory(command, self.e, False)
        if command in (E_ABSOLUTE, E_RELATIVE):
            return ModeHistory(self.xyz, command, True)
        return self

    def replay(self) -> List[str]:
        """The commands that give a printer of any family exactly these modes again."""
        if self.xyz is None:
            return [self.e] if self.e else []
        if self.e is None:
            return [self.xyz]
        return [self.xyz, self.e] if self.e_last else [self.e, self.xyz]

    @property
    def xyz_relative(self) -> bool:
        """G91 is in force (never set counts as the firmware's default, G90)."""
        return self.xyz == XYZ_RELATIVE

    def absolute_e(self, family: Optional[str]) -> Optional[bool]:
        """Whether E is absolute for ``family``, or None when the job never established
        it (for an unknown family: when the families disagree)."""
        if family == MARLIN:
            return _marlin_e(self)
        if family in (MARLIN_LEGACY, KLIPPER):
            return _flag_or_xyz_e(self)
        if family == REPRAPFIRMWARE:
            return _flag_e(self)
        readings = {_marlin_e(self), _flag_or_xyz_e(self), _flag_e(self)}
        return readings.pop() if len(readings) == 1 else None

    def reading_absolute_e(self, family: Optional[str]) -> bool:
        """The E mode to read the file with: :meth:`absolute_e`, else what the family does
        when nothing was set (absolute E; an unknown family is read as Marlin 2)."""
        known = self.absolute_e(family if family is not None else MARLIN)
        if known is not None:
            return known
        return not self.xyz_relative if family in (MARLIN_LEGACY, KLIPPER) else True


def _marlin_e(history: ModeHistory) -> Optional[bool]:
    last = history.e if history.e_last or history.xyz is None else history.xyz
    if last is None:
        return None
    return last in (E_ABSOLUTE, XYZ_ABSOLUTE)


def _flag_e(history: ModeHistory) -> Optional[bool]:
    return None if history.e is None else history.e == E_ABSOLUTE


def _flag_or_xyz_e(history: ModeHistory) -> Optional[bool]:
    if history.xyz_relative:
        return False
    return _flag_e(history)


# ---- soft limits (Marlin M211)


@dataclass(frozen=True)
class SoftLimits:
    """The box the firmware lets the head go to (mm)."""

    min_x: float
    min_y: float
    min_z: float
    max_x: float
    max_y: float
    max_z: float


_AXES = re.compile(r"([XYZ])\s*(-?\d+(?:\.\d+)?)")


def _axes(text: str) -> Optional[Tuple[float, float, float]]:
    values = {axis: float(value) for axis, value in _AXES.findall(text)}
    if not all(axis in values for axis in "XYZ"):
        return None
    return values["X"], values["Y"], values["Z"]


def parse_soft_limits(lines: Iterable[str]) -> Optional[SoftLimits]:
    """Marlin's answer to M211, e.g. ``echo:Soft endstops: On  Min:  X0.00 Y0.00 Z0.00
    Max:  X200.00 Y200.00 Z200.00`` (2.0, one line) or ``echo:  Min:  X0.00 ... Max: ...``
    after ``echo:  M211 S1 ; On`` (2.1). None when the lines hold no such report, or when
    the endstops are reported off (then nothing limits the head but the profile)."""
    enabled = True
    for line in lines:
        text = line.strip()
        lower = text.lower()
        if "m211 s0" in lower or re.search(r"soft endstops:\s*off", lower):
            enabled = False
        if "min:" not in lower or "max:" not in lower:
            continue
        start = lower.index("min:")
        middle = lower.index("max:")
        low = _axes(text[start + 4 : middle])
        high = _axes(text[middle + 4 :])
        if low is None or high is None or not enabled:
            return None
        if not all(a < b for a, b in zip(low, high)):
            return None
        return SoftLimits(low[0], low[1], low[2], high[0], high[1], high[2])
    return None


def is_soft_limits_reply(line: str) -> bool:
    """A line that belongs to an M211 answer (read while one is awaited)."""
    lower = line.lower()
    return "soft endstops" in lower or "m211" in lower or ("min:" in lower and "max:" in lower)


# Seconds an M211 answer is awaited; the query goes out on connect, when nothing else waits.
SOFT_LIMITS_WAIT = 5.0


class SoftLimitsWatch:
    """Collects the printer's answer to :data:`SOFT_LIMITS_QUERY` from received lines."""

    def __init__(self, started: float, wait: float = SOFT_LIMITS_WAIT) -> None:
        self._deadline = started + wait
        self._lines: List[str] = []
        self.limits: Optional[SoftLimits] = None

    def feed(self, line: str, now: float) -> bool:
        """Take one received line; True once the answer is complete (or overdue)."""
        if is_soft_limits_reply(line):
            self._lines.append(line)
            self.limits = parse_soft_limits(self._lines)
            if self.limits is not None:
                return True
        return now >= self._deadline or (bool(self._lines) and line.strip().startswith("ok"))


class ConnectedFirmware:
    """What the connected firmware told about itself: its name (``M115``, OctoPrint's
    FirmwareData event) and, where it reports them, its soft limits (``M211``). The event
    thread calls :meth:`introduced` and :meth:`forget`, the comm thread :meth:`feed`."""

    def __init__(self) -> None:
        self.name: Optional[str] = None
        self.limits: Optional[SoftLimits] = None
        self._watch: Optional[SoftLimitsWatch] = None

    def introduced(self, name: Optional[str], setting: str, now: float) -> Optional[str]:
        """The firmware named itself; returns the query to send for its soft limits, if
        its family reports them."""
        self.name = name or None
        self.limits = None
        if resolve_family(setting, self.name) not in REPORTS_SOFT_LIMITS:
            self._watch = None
            return None
        self._watch = SoftLimitsWatch(now)
        return SOFT_LIMITS_QUERY

    @property
    def listening(self) -> bool:
        return self._watch is not None

    def feed(self, line: str, now: float) -> bool:
        """A received line; True once the answer to the query is complete."""
        watch = self._watch
        if watch is None or not watch.feed(line, now):
            return False
        self._watch = None
        self.limits = watch.limits
        return True

    def forget(self) -> None:
        self.name = self.limits = self._watch = None

    def family(self, setting: str) -> Optional[str]:
        return resolve_family(setting, self.name)

    def describe(self, setting: str) -> str:
        family = self.family(setting)
        return f"Firmware {self.name!r}: read as {family or 'unknown (Marlin 2 rules)'}"
