"""Reading G-code lines as the layer tracker needs them: commands, words and numbers.

Pure module, tuned for OctoPrint's comm thread (the tracker reads every line of a print):
the command table gives a line's kind from its first word, the rest is only for the rare
lines that need it (line numbers, checksums, compact forms like ``G1X10E.5``). As in
Marlin, ``E`` inside a word starts a new word, never an exponent (``Z1E2`` is Z1 E2).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

EPS = 1e-6
LIMIT = 1e9  # values beyond this (and NaN/inf) are ignored
MIN_STEP = 0.001  # a min_layer_height below this (or invalid) is taken as this

K_MOVE = 1
K_ARC = 2
K_SETPOS = 3
K_ABS = 4
K_REL = 5
K_HOME = 6
K_PROBE = 7
K_EABS = 8
K_EREL = 9
K_RETRACT = 10
K_RECOVER = 11


def _command_table() -> Dict[str, int]:
    base = {
        ("G", 0): K_MOVE,
        ("G", 1): K_MOVE,
        ("G", 2): K_ARC,
        ("G", 3): K_ARC,
        ("G", 28): K_HOME,
        ("G", 29): K_PROBE,
        ("G", 90): K_ABS,
        ("G", 91): K_REL,
        ("G", 92): K_SETPOS,
        ("M", 82): K_EABS,
        ("M", 83): K_EREL,
        ("G", 10): K_RETRACT,
        ("G", 11): K_RECOVER,
    }
    table: Dict[str, int] = {}
    for (letter, number), kind in base.items():
        for head in (letter, letter.lower()):
            table[f"{head}{number}"] = kind
            table[f"{head}{number:02d}"] = kind
            table[f"{head}{number:03d}"] = kind
    return table


COMMANDS = _command_table()
SLOW_FIRST = frozenset("Nn \t\r\n\f\v")  # line numbers or leading blanks
EZF = "EZFezf"
CENTRE = "IJRijr"
_N_PREFIX = re.compile(r"\s*[Nn]\s*[-+]?\d*\s*")
HEAD = re.compile(r"\s*[GgMm]\s*\d+")
TOKEN = re.compile(r"([A-Za-z])\s*([-+]?(?:\d+\.?\d*|\.\d+))")


def clean(line: str) -> str:
    """The line without comment, checksum, line number and surrounding blanks."""
    cut = line.find(";")
    if cut >= 0:
        line = line[:cut]
    cut = line.find("*")
    if cut >= 0:
        line = line[:cut]
    line = line.strip()
    if line[:1] in ("N", "n"):
        match = _N_PREFIX.match(line)
        if match:
            line = line[match.end() :]
    return line


def compact_parts(line: str) -> Optional[List[str]]:
    """Tokens of a line written without blanks (``G1X10E.5``), or None if no command."""
    tokens = TOKEN.findall(clean(line))
    if not tokens:
        return None
    letter, number = tokens[0]
    if letter not in "GgMm" or not number.isdigit():
        return None
    return [letter + number for letter, number in tokens]


def finite(text: str) -> Optional[float]:
    """A plain number (no exponent: in G-code ``E`` is a word) within +-1e9, else None."""
    if "e" in text or "E" in text:
        return None
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    if -LIMIT < value < LIMIT:
        return value
    return None


def axis_value(word: str) -> Optional[float]:
    """The value of an X/Y word such as ``X12.5``; glued forms (``X1*45``, ``X1Y2``) give
    their first number; None when unreadable."""
    value = finite(word[1:])
    if value is None:
        tokens = TOKEN.findall(clean(word))
        if tokens and tokens[0][0] == word[0]:
            value = finite(tokens[0][1])
    return value
