"""Where an occupancy model's point error comes from: plane by plane across the slab.

    python scripts/occupancy_error_by_plane.py [--split val] [--model joint_occ] [--seed 0] [--dose 10]

For the chest slabs of a split (``POINT_SPLITS`` in ``napari_jointrecon/training/joint.py``), the
model's occupancy (9 planes, 2 mm apart; plane 4 is the input slice) is compared with the true one
(:func:`napari_jointrecon.training.joint_eval.occupancy_plane_errors`): the fraction of misclassified
pixels per plane, and the Chamfer distance of the model's points when some of its planes are
replaced by the true ones. The true occupancy's own Chamfer is the level a perfect occupancy
reaches through the same point sampler.
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--model", default="joint_occ", choices=("joint_occ", "sequential_occ"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dose", type=int, default=10, choices=(10, 25, 50, 70), help="percent")
    args = parser.parse_args(argv)

    from napari_jointrecon.joint import load_point_model
    from napari_jointrecon.training.joint import JointData
    from napari_jointrecon.training.joint_eval import occupancy_plane_errors

    data = JointData.build(args.split)
    err = occupancy_plane_errors(load_point_model(args.model, args.seed), data, args.dose / 100)
    print(f"{args.model} seed {args.seed}, {args.split} slabs {data.centres[0]}-{data.centres[-1]}, "
          f"{args.dose} % dose")
    print(f"Chamfer: model {err['model']:.6f}, true occupancy {err['true']:.6f}")
    print("misclassified pixels per plane (%): " + " ".join(f"{100 * w:.2f}" for w in err["wrong"]))
    for name, value in err["mixed"].items():
        print(f"Chamfer with the true {name}: {value:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
