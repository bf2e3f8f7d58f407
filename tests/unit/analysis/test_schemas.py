"""The JSON Schemas shipped in the package: present, valid, found by name."""

from __future__ import annotations

import jsonschema
import pytest

from octoprint_layercapture.schemas import SCHEMA_NAMES, load_schema, schema_path


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"octoprint_layercapture/schemas/{name}.schema.json")


def test_an_unknown_schema_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no schema called 'nope'"):
        schema_path("nope")
    with pytest.raises(ValueError):
        schema_path("../metadata")  # names only, never paths
