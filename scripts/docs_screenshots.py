"""`make docs-screenshots`: the README's screenshots, from the browser tests' own.

The browser tests (tests/browser/test_ui.py) save what they see to test-artifacts/browser/;
this copies three of them to docs/ as small PNGs (at most 760 px wide, 64-colour palette),
so the README shows the UI as the tests last saw it. Run the browser tests first (the make
target does).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TAKEN = ROOT / "test-artifacts" / "browser"
DOCS = ROOT / "docs"
MAX_WIDTH = 760
COLOURS = 64
# docs/ name: the browser test's screenshot
SCREENSHOTS = {
    "settings-panel.png": "settings_panel_estimate.png",
    "tab-gallery.png": "tab_gallery.png",
    "image-viewer.png": "gallery_image.png",
}


def shrink(source: Path, target: Path) -> int:
    with Image.open(source) as image:
        picture = image.convert("RGB")
    if picture.width > MAX_WIDTH:
        height = round(picture.height * MAX_WIDTH / picture.width)
        picture = picture.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    small = picture.quantize(COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(target, optimize=True)
    return target.stat().st_size


def main() -> int:
    missing = [name for name in SCREENSHOTS.values() if not (TAKEN / name).is_file()]
    if missing:
        sys.stderr.write(f"not in {TAKEN}: {', '.join(missing)}; run the browser tests first\n")
        return 1
    DOCS.mkdir(exist_ok=True)
    for target, source in SCREENSHOTS.items():
        size = shrink(TAKEN / source, DOCS / target)
        sys.stdout.write(f"docs/{target}: {size // 1024} KiB (from {source})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
