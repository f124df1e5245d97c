"""Make the README's screenshots with the plugin's own widgets (under a display or xvfb-run).

    xvfb-run -a -s "-screen 0 1600x1100x24" .venv/bin/python scripts/make_screenshots.py

Runs the demo workflow (:func:`napari_jointrecon.demo.run_demo`: load -> simulated 25 % dose ->
Denoise -> Compare -> Metrics -> 3D point cloud) in a 1400 x 1000 window, twice:

* on the sample phantom (the 1 mm thorax phantom, noise-free): ``compare_swipe.png`` ...;
* on a real CT series from ``../shared/data/ct-series/`` (by default the chest of LIDC-IDRI-0001, a
  patient of the held-out test split, CC BY 3.0: the README names its source beside the
  pictures): the same names with the prefix ``ct_``.

Then makes them README-sized: the canvas pictures cropped to what they show (the black of the canvas
around the body off), the window pictures at most 1200 pixels wide, all saved as palette PNGs under
300 KB. Reports (``report.md``, ``ct_report.md``) land beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: The real series shown: its folder under the shared data's ``ct-series/``.
CT_SERIES = "ge-lightspeedplus-STANDARD-chest"
#: Pictures of the canvas alone (cropped to their content) and of the whole window (scaled).
CANVAS_SHOTS = ("compare_side_by_side.png", "pointcloud_3d.png")
MAX_BYTES = 300_000


def shrink(path: Path, *, crop: bool, max_width: int = 1200, max_bytes: int = MAX_BYTES) -> int:
    """Crop (``crop``: to the lit pixels, with a margin), scale to ``max_width`` and save ``path`` as a
    palette PNG under ``max_bytes`` (fewer colours, then smaller, until it fits); returns its size."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    if crop:
        lit = np.asarray(image).max(axis=2) > 12
        if lit.any():
            rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
            pad = 12
            image = image.crop((max(cols[0] - pad, 0), max(rows[0] - pad, 0),
                                min(cols[-1] + pad + 1, image.width), min(rows[-1] + pad + 1, image.height)))
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    colours = 256
    while True:
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True)
        size = path.stat().st_size
        if size <= max_bytes:
            return size
        if colours > 64:
            colours //= 2
        else:
            image = image.resize((round(image.width * 0.85), round(image.height * 0.85)), Image.Resampling.LANCZOS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "docs" / "images"))
    parser.add_argument("--only", choices=("phantom", "ct"), help="one of the two runs")
    parser.add_argument("--series", help=f"a full-dose CT for the ct_ pictures (default: ct-series/{CT_SERIES})")
    args = parser.parse_args(argv)
    from napari_jointrecon import testdata
    from napari_jointrecon.demo import SCREENSHOTS, run_demo

    out = Path(args.out)
    runs = []
    if args.only in (None, "phantom"):
        runs.append(("", None))
    if args.only in (None, "ct"):
        series = Path(args.series) if args.series else None
        if series is None:
            root = testdata.locate(REPO)
            if root is None:
                raise SystemExit(testdata.not_found_message(REPO))
            series = root / "ct-series" / CT_SERIES
        runs.append(("ct_", series))
    for prefix, series in runs:
        report = run_demo(out, series, prefix=prefix)
        print(report.read_text())
        for name in SCREENSHOTS:
            path = out / f"{prefix}{name}"
            size = shrink(path, crop=name in CANVAS_SHOTS)
            print(f"{path.name}: {size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
