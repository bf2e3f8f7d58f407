from __future__ import annotations

import json

import jsonschema
import pytest
from sample_records import sample_metadata

from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.store.records import (
    LayerMetadata,
)

SCHEMA = load_schema("metadata")
SPEC_KEYS = [
    "layer",
    "z_height",
    "timestamp",
    "gcode_file",
    "print_start_time",
    "images",
    "settings",
]


def test_metadata_has_the_spec_keys_first_and_validates():
    data = sample_metadata().to_dict()
    assert list(data)[: len(SPEC_KEYS)] == SPEC_KEYS
    assert list(data["images"][0])[:3] == ["path", "position", "index"]
    assert data["images"][0]["position"] == {"x": 105.0, "y": 85.0, "z": 8.0}
    assert data["settings"]["grid_center"] == {"x": 125.0, "y": 105.0}
    jsonschema.validate(data, SCHEMA)


def test_minimal_metadata_validates():
    meta = LayerMetadata(3, 0.6, "2024-01-15T10:30:00", "a.gcode", None, [], SPEC_SETTINGS)
    jsonschema.validate(meta.to_dict(), SCHEMA)


SPEC_SETTINGS = {"grid_spacing": 20.0, "grid_center": {"x": 125.0, "y": 105.0}, "grid_size": 3}


def test_schema_checks_itself():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("key", SPEC_KEYS)
def test_metadata_missing_a_spec_key_fails_the_schema(key):
    data = sample_metadata().to_dict()
    del data[key]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("images", 0), "path"),
        (("images", 0), "position"),
        (("images", 0), "index"),
        (("settings",), "grid_spacing"),
        (("settings",), "grid_center"),
        (("settings",), "grid_size"),
        (("images", 0, "position"), "z"),
    ],
)
def test_metadata_missing_a_nested_spec_key_fails_the_schema(path, key):
    data = sample_metadata().to_dict()
    node = data
    for part in path:
        node = node[part]
    del node[key]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_metadata_with_a_bad_image_name_fails_the_schema():
    data = sample_metadata().to_dict()
    data["images"][0]["path"] = "../etc/passwd"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_metadata_json_is_utf8_indented_and_nan_free():
    meta = sample_metadata(gcode_file="Würfel.gcode")
    meta.images[0].measured = {"x": float("nan"), "y": 1.0, "z": float("inf"), "e": None}
    text = meta.to_json().decode("utf-8")
    assert "Würfel.gcode" in text
    assert '\n  "layer": 15,' in text
    data = json.loads(text)
    assert data["images"][0]["measured"] == {"x": None, "y": 1.0, "z": None, "e": None}
    jsonschema.validate(data, SCHEMA)
