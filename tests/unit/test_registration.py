"""The plugins.octoprint.org registration file (extras/layercapture.md) agrees with the code:
its front matter has the fields OctoPrint's plugin template asks for, admits every OctoPrint
version the tests run on, asks for the Python pyproject.toml asks for, and its screenshots
are the ones in docs/."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict

import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
REGISTRATION = ROOT / "extras" / "layercapture.md"
sys.path.insert(0, str(ROOT / "scripts"))

import compat  # noqa: E402

FIELDS = (
    "layout",
    "id",
    "title",
    "description",
    "authors",
    "license",
    "date",
    "homepage",
    "source",
    "archive",
    "tags",
    "screenshots",
    "featuredimage",
    "compatibility",
)


def front_matter() -> Dict[str, Any]:
    text = REGISTRATION.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "the file starts with YAML front matter between --- lines"
    data = yaml.safe_load(match.group(1))
    assert isinstance(data, dict)
    return data


def pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_front_matter_has_the_templates_fields() -> None:
    data = front_matter()
    assert [field for field in FIELDS if not data.get(field)] == []
    assert data["layout"] == "plugin"
    assert data["id"] == "layercapture"  # the octoprint.plugin entry point
    assert 'layercapture = "octoprint_layercapture"' in pyproject()
    assert f'name = "{data["title"]}"' in pyproject()
    assert data["license"] == "AGPLv3" and 'license = "AGPL-3.0-or-later"' in pyproject()
    assert data["archive"] in (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(data["date"]))


def test_compatibility_admits_every_tested_octoprint_and_the_projects_python() -> None:
    compatibility = front_matter()["compatibility"]
    (octoprint,) = compatibility["octoprint"]
    allowed = SpecifierSet(octoprint, prereleases=True)
    tested = [leg.octoprint.split("==")[1] for leg in compat.LEGS]
    make_test = re.search(
        r"^OCTOPRINT_SPEC \?= OctoPrint(.+)$", (ROOT / "Makefile").read_text(), re.M
    )
    assert make_test
    assert "1.11.8" in SpecifierSet(make_test.group(1))
    for version in [*tested, "1.11.8"]:
        assert version in allowed, version
    assert "1.9.3" not in allowed
    requires = re.search(r'^requires-python = "(.+)"$', pyproject(), re.M)
    assert requires and compatibility["python"] == requires.group(1)


def test_the_screenshots_are_the_ones_in_docs() -> None:
    data = front_matter()
    urls = [shot["url"] for shot in data["screenshots"]] + [data["featuredimage"]]
    for url in urls:
        assert url.startswith("/assets/img/plugins/layercapture/"), url
        assert (ROOT / "docs" / url.rsplit("/", 1)[1]).is_file(), url
    for shot in data["screenshots"]:
        assert shot["alt"] and shot["caption"]
