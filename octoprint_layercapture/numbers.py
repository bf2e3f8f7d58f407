"""Reading a number from a value that came from outside (JSON, settings, events). Pure.

G-code words have their own reader (``capture/gcode_lexer.py``): there ``E`` is a word,
never an exponent.
"""

from __future__ import annotations

import math
from typing import Any, Optional


def finite_number(value: Any, *, text: bool = True) -> Optional[float]:
    """A finite float from a number (never a boolean) or, with ``text``, from numeric text;
    None for anything else, including NaN and infinities."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if not text or not value.strip():
            return None
    elif not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
