"""Picture of a predicted point cloud against the reference surface (chest test slab).

    python scripts/plot_point_cloud.py [--slice 70] [--dose 25] [--out docs/images/point_cloud_chest.png]

Three views (axial, coronal, sagittal projections) of the reference cloud (10,000 points of the
-500 HU surface in the 16 mm slab) and the predictions of the joint model, its deformation-decoder
variant and the sequential baseline, all in world millimetres, with each one's Chamfer distance.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slice", type=int, default=70, help="volume slice (point-cloud test slabs: 64-76)")
    parser.add_argument("--dose", type=float, default=25.0, help="percent")
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "point_cloud_chest.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import napari_jointrecon as nj
    from napari_jointrecon.pointcloud import point_metrics, slab_frame

    shared = Path(os.environ.get("JOINTRECON_SHARED_DATA", REPO.parent / "shared" / "data"))
    chest = nj.load_ct(shared / "chest-ct-dicom")
    low = nj.simulate_low_dose(chest, args.dose / 100, seed=1234)
    k = args.slice
    ref = nj.reference_point_cloud(chest, k, 10000)
    frame = slab_frame(chest, k)
    models = ("joint_occ", "joint", "sequential_occ", "sequential", "joint_fold")
    preds = {m: nj.predict_point_cloud(low, slice_index=k, dose=args.dose / 100, model=m) for m in models}
    fig, axes = plt.subplots(len(models), 3, figsize=(13, 4 * len(models)))
    views = [("axial (y vs x)", 2, 1), ("coronal (z vs x)", 2, 0), ("sagittal (z vs y)", 1, 0)]
    for row, m in enumerate(models):
        pts = preds[m].points
        score = point_metrics(frame.world_to_normalised(pts, chest), frame.world_to_normalised(ref, chest), frame)
        for col, (title, a, b) in enumerate(views):
            ax = axes[row, col]
            ax.scatter(ref[:, a], ref[:, b], s=0.3, c="#3fa9f5", alpha=0.4, label="reference (-500 HU surface)")
            ax.scatter(pts[:, a], pts[:, b], s=2, c="#ff7f0e", label=f"{m} prediction")
            ax.set_title(f"{m}: {title}" + (f"\nChamfer {score['chamfer']:.4f}, {score['chamfer_mm']:.1f} mm, "
                                             f"F@5% {score['f5']:.2f}" if col == 0 else ""))
            ax.set_xlabel("xyz"[::-1][a] + " (mm)")
            ax.set_ylabel("xyz"[::-1][b] + " (mm)")
            if b == 1:
                ax.invert_yaxis()
            if b != 0:
                ax.set_aspect("equal")
            if row == 0 and col == 0:
                ax.legend(loc="lower left", fontsize=8, markerscale=4)
    fig.suptitle(f"chest slice {k} at {args.dose:g} % dose: predicted clouds (1000 points) vs reference "
                 f"(16 mm slab), world mm")
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # room for the title above the first row
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
