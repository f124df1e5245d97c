"""Picture of predicted point clouds against the reference surface and the extrusion baseline.

    python scripts/plot_point_cloud.py [--series ct-series/ge-lightspeedplus-STANDARD-chest] [--slice 18]
        [--dose 25] [--models contour sequential_contour joint_occ joint] [--out docs/images/point_cloud_heldout.png]

Rows: the extrusion baseline (the low-dose slice's -500 HU contour copied through the slab, no
network) and each model; columns: axial, coronal and sagittal projections, in world millimetres, of
the reference cloud (10,000 points of the -500 HU surface in the 16 mm slab of the full-dose
volume) and the 1000-point cloud, with each one's mean surface distance. The default series is a
held-out (test) patient; the low dose comes from the project's dose simulation (seed 1234).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", default="ct-series/ge-lightspeedplus-STANDARD-chest",
                        help="folder under the shared data (default: a held-out patient's chest)")
    parser.add_argument("--slice", type=int, default=18, help="volume slice, the slab's centre")
    parser.add_argument("--dose", type=float, default=25.0, help="percent")
    parser.add_argument("--models", nargs="+", default=["contour", "sequential_contour", "joint_occ", "joint"])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "point_cloud_heldout.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import napari_jointrecon as nj
    from napari_jointrecon.pointcloud import _nearest_distances_mm
    from napari_jointrecon.training.points_eval import extrusion_cloud

    shared = Path(os.environ.get("JOINTRECON_SHARED_DATA", REPO.parent / "shared" / "data"))
    ct = nj.load_ct(shared / args.series)
    k = args.slice
    hu = ct.hu.copy()
    lo, hi = max(k - 1, 0), min(k + 2, ct.shape[0])
    hu[lo:hi] = nj.simulate_low_dose(ct.hu[lo:hi], args.dose / 100, seed=1234, spacing=ct.spacing)
    low = ct.with_hu(hu)
    ref = nj.reference_point_cloud(ct, k, 10000)
    clouds = {"extrusion (no network)": extrusion_cloud(ct, k, low.hu[k])}
    for m in args.models:
        clouds[m] = nj.predict_point_cloud(low, slice_index=k, dose=args.dose / 100, model=m).points
    fig, axes = plt.subplots(len(clouds), 3, figsize=(13, 3.6 * len(clouds)), squeeze=False)
    views = [("axial (y vs x)", 2, 1), ("coronal (z vs x)", 2, 0), ("sagittal (z vs y)", 1, 0)]
    for row, (name, pts) in enumerate(clouds.items()):
        d_pr, d_rp = _nearest_distances_mm(pts, ref)
        msd = 0.5 * (d_pr.mean() + d_rp.mean())
        for col, (title, a, b) in enumerate(views):
            ax = axes[row, col]
            ax.scatter(ref[:, a], ref[:, b], s=0.3, c="#3fa9f5", alpha=0.4, label="reference (-500 HU surface)")
            ax.scatter(pts[:, a], pts[:, b], s=2, c="#ff7f0e", label=f"{name} (1000 points)")
            ax.set_title(f"{name}: {title}" + (f"\nmean surface distance {msd:.2f} mm" if col == 0 else ""))
            ax.set_xlabel("xyz"[::-1][a] + " (mm)")
            ax.set_ylabel("xyz"[::-1][b] + " (mm)")
            if b == 1:
                ax.invert_yaxis()
            if b != 0:
                ax.set_aspect("equal")
            if col == 0:
                ax.legend(loc="lower left", fontsize=7, markerscale=4)
    fig.suptitle(f"{args.series} (patient never trained on), slice {k} at {args.dose:g} % dose: "
                 "1000-point clouds vs the reference (16 mm slab), world mm")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
