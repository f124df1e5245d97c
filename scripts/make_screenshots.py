"""Make the README's screenshots with the plugin's own widgets (under a display or xvfb-run).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py [--chest]

Runs the demo workflow (:func:`napari_jointrecon.demo.run_demo`: sample data -> Denoise -> Compare ->
Metrics -> 3D point cloud) and writes its screenshots and report to docs/images/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(REPO / "docs" / "images"))
    parser.add_argument("--chest", action="store_true", help="the real chest series instead of the sample")
    args = parser.parse_args(argv)
    from napari_jointrecon.demo import run_demo

    report = run_demo(args.out, chest=args.chest)
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
