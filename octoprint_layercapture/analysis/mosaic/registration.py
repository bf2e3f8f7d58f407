"""How far one picture is shifted against another (phase correlation), and whether a
picture has texture enough to tell.

:func:`phase_correlate` whitens the cross-power spectrum of two equally sized grey
pictures (a Tukey window against the edges that keeps the middle half at full weight, so
the edges of a part count as much as its infill; a soft low-pass against sensor noise), finds
the correlation peak, optionally within a bound, and refines it to a fraction of a pixel
with a parabola through the peak and its neighbours on each axis. ``peak`` is the height
of the correlation there: about 1 for two copies of one picture, near 0 for unrelated ones;
``ambiguity`` the height of the best other peak against it (near 1: a repetitive picture,
infill lines, where a shift by one period fits almost as well).

:func:`texture` is the root-mean-square grey-level gradient of the picture after a 3 x 3
blur (so sensor noise alone counts for little): a blank or blurred surface scores low.
Needs numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import NDArray

Grey = NDArray[np.float64]

#: below this :func:`texture`, shifts are not measured (grey levels per pixel)
MIN_TEXTURE = 4.0
#: below this correlation peak, a measured shift is not trusted
MIN_PEAK = 0.05
#: above this ratio of the second peak to the first, a shift is ambiguous
MAX_AMBIGUITY = 0.85
_TUKEY = 0.5  # the tapered share of the window
_LOW_PASS = 0.22  # cycles per pixel: the soft cut-off of the correlation's weighting


@dataclass(frozen=True)
class Shift:
    """``b`` shows ``a`` moved by ``(dx, dy)`` pixels: ``b(x, y) ~ a(x - dx, y - dy)``."""

    dx: float
    dy: float
    peak: float
    ambiguity: float = 0.0

    @property
    def trusted(self) -> bool:
        return self.peak >= MIN_PEAK and self.ambiguity <= MAX_AMBIGUITY


def grey(image: Any) -> Grey:
    """A Pillow image as grey levels (float)."""
    return np.asarray(image.convert("L"), dtype=np.float64)


def _tukey(n: int) -> Grey:
    x = np.linspace(0.0, 1.0, n)
    window = np.ones(n)
    edge = _TUKEY / 2
    low, high = x < edge, x > 1 - edge
    window[low] = 0.5 * (1 + np.cos(np.pi * (x[low] / edge - 1)))
    window[high] = 0.5 * (1 + np.cos(np.pi * ((x[high] - 1) / edge + 1)))
    return window


def _window(shape: Tuple[int, int]) -> Grey:
    rows, cols = shape
    return np.outer(_tukey(rows), _tukey(cols))


def _low_pass(shape: Tuple[int, int]) -> Grey:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-(fx**2 + fy**2) / (2 * _LOW_PASS**2))


def _parabola(minus: float, centre: float, plus: float) -> float:
    denominator = minus - 2 * centre + plus
    if denominator >= 0:  # not a maximum: no refinement
        return 0.0
    return float(np.clip(0.5 * (minus - plus) / denominator, -0.5, 0.5))


def phase_correlate(a: Grey, b: Grey, max_shift: Optional[float] = None) -> Shift:
    """The shift of ``b`` against ``a`` (same shape, at least 8 x 8 pixels)."""
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 8:
        raise ValueError(f"two grey pictures of one size are needed, got {a.shape}, {b.shape}")
    window = _window((a.shape[0], a.shape[1]))
    fa = np.fft.rfft2((a - a.mean()) * window)
    fb = np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-9
    rows, cols = a.shape
    full = _low_pass((rows, cols))
    weight = full[:, : cross.shape[1]]
    surface = np.fft.irfft2(cross * weight, s=(rows, cols))
    surface /= full.sum() / (rows * cols)  # 1 at the peak for two copies of a picture
    if max_shift is not None:
        dy = np.minimum(np.arange(rows), rows - np.arange(rows))[:, None]
        dx = np.minimum(np.arange(cols), cols - np.arange(cols))[None, :]
        surface = np.where((dx <= max_shift) & (dy <= max_shift), surface, -np.inf)
    found = np.unravel_index(int(np.argmax(surface)), surface.shape)
    py, px = int(found[0]), int(found[1])
    peak = float(surface[py, px])
    others = surface.copy()
    near_y = np.arange(py - 3, py + 4) % rows
    near_x = np.arange(px - 3, px + 4) % cols
    others[np.ix_(near_y, near_x)] = -np.inf
    second = float(np.max(others))
    ambiguity = max(0.0, second / peak) if peak > 0 and np.isfinite(second) else 0.0

    def at(y: int, x: int) -> float:
        value = float(surface[y % rows, x % cols])
        return value if np.isfinite(value) else peak

    fine_x = _parabola(at(py, px - 1), peak, at(py, px + 1))
    fine_y = _parabola(at(py - 1, px), peak, at(py + 1, px))
    sx = px + fine_x if px <= cols // 2 else px - cols + fine_x
    sy = py + fine_y if py <= rows // 2 else py - rows + fine_y
    return Shift(float(sx), float(sy), peak, ambiguity)


def texture(picture: Grey) -> float:
    """Root-mean-square gradient (grey levels per pixel) after a 3 x 3 blur."""
    if picture.ndim != 2 or min(picture.shape) < 4:
        return 0.0
    padded = np.pad(picture, 1, mode="edge")
    blurred = (
        sum(
            padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        / 9.0
    )
    gy, gx = np.gradient(blurred)
    return float(np.sqrt(np.mean(gx**2 + gy**2)))
