"""The JSON Schemas of the files the plugin writes, shipped with the package.

* ``metadata``: one ``layer_NNNN_metadata_*.json`` per captured layer;
* ``toolpath``: one ``layer_NNNN_toolpath_*.json`` per captured layer (its extrusion moves);
* ``manifest``: the ``dataset.json`` of a dataset export.

docs/metadata.md describes every field. Pure module (stdlib only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

SCHEMA_NAMES = ("metadata", "toolpath", "manifest")
_FOLDER = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    """The file of schema ``name`` (one of :data:`SCHEMA_NAMES`)."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"no schema called {name!r}; there are {', '.join(SCHEMA_NAMES)}")
    return _FOLDER / f"{name}.schema.json"


def load_schema(name: str) -> Dict[str, Any]:
    """Schema ``name`` as a JSON object."""
    with open(schema_path(name), encoding="utf-8") as handle:
        data: Dict[str, Any] = json.load(handle)
    return data
