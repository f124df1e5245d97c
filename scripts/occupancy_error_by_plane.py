"""Where an occupancy model's point error comes from: plane by plane across the slab.

    python scripts/occupancy_error_by_plane.py [--split val] [--model joint_occ] [--seed 0] [--dose 10]

For the chest slabs of a split (``POINT_SPLITS`` in ``napari_jointrecon/training/joint.py``), the
model's occupancy (9 planes, 2 mm apart; plane 4 is the input slice) is compared with the true one:
the fraction of misclassified pixels per plane, and the Chamfer distance of the model's points
when some of its planes are replaced by the true ones. The true occupancy's own Chamfer is the
level a perfect occupancy reaches through the same point sampler.
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--model", default="joint_occ", choices=("joint_occ", "sequential_occ"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dose", type=float, default=10.0, help="percent: 10, 25, 50 or 70")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from napari_jointrecon.dose import DOSE_LEVELS
    from napari_jointrecon.joint import load_point_model
    from napari_jointrecon.pointcloud import chamfer_distance, occupancy_points
    from napari_jointrecon.training.joint import JointData

    doses = [round(d * 100) for d in DOSE_LEVELS]
    if round(args.dose) not in doses:
        parser.error(f"--dose must be one of {doses}")
    data = JointData.build(args.split)
    n = data.clean.shape[0]
    dose = torch.full((n,), args.dose / 100)
    x = data.low[doses.index(round(args.dose)), 0][:, None]
    nets = load_point_model(args.model, args.seed)
    with torch.no_grad():
        if "model" in nets:
            _, logits = nets["model"](x, dose)
        else:
            den, _ = nets["seq_denoiser_dose"](x, dose)
            _, logits = nets["seq_regressor_occ"](den)
    pred = torch.sigmoid(logits).numpy()
    true = data.occupancy.numpy()

    def chamfer(occ) -> float:
        pts = np.stack([occupancy_points(o, 1000, half_extent_mm=f.half_extent_mm)
                        for o, f in zip(occ, data.frames)])
        return float(chamfer_distance(torch.from_numpy(pts).float(), data.points).mean())

    print(f"{args.model} seed {args.seed}, {args.split} slabs {data.centres[0]}-{data.centres[-1]}, "
          f"{args.dose:g} % dose")
    print(f"Chamfer: model {chamfer(pred):.6f}, true occupancy {chamfer(true):.6f}")
    wrong = ((pred > 0.5) != (true > 0.5)).mean(axis=(0, 2, 3))
    print("misclassified pixels per plane (%): " + " ".join(f"{100 * w:.2f}" for w in wrong))
    for name, planes in (("input plane 4", [4]), ("planes 3-5", [3, 4, 5]), ("outer planes 0, 1, 7, 8", [0, 1, 7, 8])):
        mixed = pred.copy()
        mixed[:, planes] = true[:, planes]
        print(f"Chamfer with the true {name}: {chamfer(mixed):.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
