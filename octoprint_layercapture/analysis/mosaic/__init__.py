"""A toolhead camera's shots of a layer as one top-down picture in bed millimetres.

* :mod:`.registration`: phase correlation (the shift between two pictures) and how much
  texture a picture has;
* :mod:`.calibration`: the camera's scale, rotation and mirroring from shots at known
  small head displacements (*Calibrate*);
* :mod:`.stitch`: the shots placed by the head's measured positions and the mounting,
  their places refined by registering the overlaps (and the layer's toolpath), blended;
* :mod:`.departure`: where the picture departs from the layer's toolpath;
* :mod:`.overlay`: the toolpath and the departure map drawn over the mosaic;
* :mod:`.layer`: one captured layer's mosaic from its files, and the metadata record;
* :mod:`.worker`: the named thread that makes them once the head is back.

The numerical parts need numpy, an optional extra (``pip install
"OctoPrint-LayerCapture[analysis]"``): without it the plugin captures as before and the
layer's ``mosaic`` record says what the extra would add (:data:`NEEDS_NUMPY`). Only
:mod:`.layer` and :mod:`.worker` may be imported without numpy.
"""

from __future__ import annotations

import importlib.util

EXTRA = "analysis"
NEEDS_NUMPY = (
    "the mosaic needs numpy: install the plugin's analysis extra "
    '(pip install "OctoPrint-LayerCapture[analysis]") in OctoPrint\'s Python environment'
)


def numpy_available() -> bool:
    """Whether numpy can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("numpy") is not None
    except (ImportError, ValueError):
        return False
