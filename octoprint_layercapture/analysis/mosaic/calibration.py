"""*Calibrate*: a toolhead camera's scale, rotation and mirroring from its own pictures.

Over a textured surface (a printed part's top, a textured bed) the head takes a reference
shot, then shots after known small XY displacements (:func:`displacements`). Moving the
head by ``d`` moves the picture's content by ``-A d`` (see :mod:`cameras.mounting`), so
each shot's shift against the reference (phase correlation) is two equations in the four
entries of ``A``; a least-squares fit over all of them gives ``A``, and the similarity
nearest to it the scale (px/mm), the rotation and whether the picture is mirrored. The
residual is the root-mean-square difference (px) between the measured shifts and the
shifts that similarity predicts.

Refused, with the reason, when the reference has too little texture, a shift cannot be
measured (a weak or ambiguous correlation peak: a blank, blurred or repetitive surface, or
a displacement larger than the picture allows), the displacements do not span both axes, or
the fit leaves a residual above :data:`MAX_RESIDUAL_PX`. The offset from the nozzle cannot
be seen this way and stays as entered. Pure module (numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...cameras.mounting import decompose, similarity
from ...capture.calibrate import DEFAULT_STEP_MM
from ...capture.calibrate import displacements as head_moves
from .registration import MAX_AMBIGUITY, MIN_PEAK, MIN_TEXTURE, Grey, phase_correlate, texture

MAX_RESIDUAL_PX = 1.5

Displacement = Tuple[float, float]


def displacements(step: float = DEFAULT_STEP_MM) -> List[Displacement]:
    """The head's moves from the reference spot, mm: both axes, both ways, one diagonal
    (the moves :mod:`capture.calibrate` makes)."""
    return head_moves(step)


@dataclass(frozen=True)
class Measurement:
    displacement: Displacement  # mm
    shift: Tuple[float, float]  # px, of the content
    peak: float
    ambiguity: float


@dataclass
class CalibrationResult:
    ok: bool
    reason: str = ""  # why it was refused
    scale: Optional[float] = None  # px/mm
    rotation: Optional[float] = None  # degrees
    mirrored: Optional[bool] = None
    residual_px: Optional[float] = None
    texture: Optional[float] = None
    measurements: List[Measurement] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "scale": None if self.scale is None else round(self.scale, 4),
            "rotation": None if self.rotation is None else round(self.rotation, 3),
            "mirrored": self.mirrored,
            "residual_px": None if self.residual_px is None else round(self.residual_px, 3),
            "texture": None if self.texture is None else round(self.texture, 2),
            "measurements": [
                {
                    "displacement_mm": list(m.displacement),
                    "shift_px": [round(m.shift[0], 3), round(m.shift[1], 3)],
                    "peak": round(m.peak, 3),
                    "ambiguity": round(m.ambiguity, 3),
                }
                for m in self.measurements
            ],
        }


def fit_mounting(
    moves: Sequence[Displacement], shifts: Sequence[Tuple[float, float]]
) -> Tuple[float, float, bool, float]:
    """``(scale, rotation, mirrored, residual px)`` from head moves (mm) and the content
    shifts they caused (px). ValueError when the moves do not span both axes."""
    d = np.asarray(moves, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    if len(d) != len(t) or len(d) < 2 or np.linalg.matrix_rank(d, tol=1e-6) < 2:
        raise ValueError("the displacements must move the head along both axes")
    # t = -A d for every row: least squares for A^T from d A^T = -t
    solution, *_ = np.linalg.lstsq(d, -t, rcond=None)
    a = solution.T
    scale, rotation, mirrored = decompose((a[0, 0], a[0, 1], a[1, 0], a[1, 1]))
    model = np.asarray(similarity(scale, rotation, mirrored)).reshape(2, 2)
    predicted = -(d @ model.T)
    residual = float(np.sqrt(np.mean(np.sum((predicted - t) ** 2, axis=1))))
    return scale, rotation, mirrored, residual


def calibrate(reference: Grey, shots: Sequence[Tuple[Displacement, Grey]]) -> CalibrationResult:
    """The mounting's scale, rotation and mirroring from a reference picture and pictures
    taken after the given head displacements (mm), or the reason it cannot be told."""
    detail = texture(reference)
    result = CalibrationResult(ok=False, texture=detail)
    if detail < MIN_TEXTURE:
        result.reason = (
            f"too little texture under the camera ({detail:.1f}, at least {MIN_TEXTURE:g} "
            "needed): calibrate over a printed part or a textured bed, in focus and lit"
        )
        return result
    for move, picture in shots:
        if picture.shape != reference.shape:
            result.reason = "the shots do not all have the reference's size"
            return result
        shift = phase_correlate(reference, picture)
        result.measurements.append(
            Measurement(move, (shift.dx, shift.dy), shift.peak, shift.ambiguity)
        )
        if shift.peak < MIN_PEAK or shift.ambiguity > MAX_AMBIGUITY:
            why = "weak" if shift.peak < MIN_PEAK else "ambiguous (a repetitive surface?)"
            result.reason = (
                f"the picture's shift after moving X {move[0]:g} Y {move[1]:g} mm could not be "
                f"measured: the correlation is {why} (peak {shift.peak:.2f}); calibrate over "
                "an irregular texture, or with a smaller step"
            )
            return result
    try:
        scale, rotation, mirrored, residual = fit_mounting(
            [m.displacement for m in result.measurements],
            [m.shift for m in result.measurements],
        )
    except ValueError as exc:
        result.reason = str(exc)
        return result
    result.scale, result.rotation, result.mirrored = scale, rotation, mirrored
    result.residual_px = residual
    if not math.isfinite(residual) or residual > MAX_RESIDUAL_PX:
        result.reason = (
            f"the shifts do not fit one scale and rotation (residual {residual:.2f} px, at "
            f"most {MAX_RESIDUAL_PX:g}): the head or the camera moved, or the surface did"
        )
        return result
    result.ok = True
    return result


def calibrate_images(
    reference: bytes, shots: Sequence[Tuple[Displacement, bytes]]
) -> CalibrationResult:
    """:func:`calibrate` on encoded pictures (the camera's JPEG bytes)."""
    import io

    from PIL import Image

    from .registration import grey

    def load(data: bytes) -> Grey:
        with Image.open(io.BytesIO(data)) as picture:
            return grey(picture)

    return calibrate(load(reference), [(move, load(data)) for move, data in shots])
