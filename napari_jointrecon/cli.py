"""The ``jointrecon`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CTReadError, CTWriteError

__all__ = ["main"]


def _cmd_info(args) -> int:
    from .io import load_ct, scan_series

    if args.list:
        for info in scan_series(args.input):
            print(f"{info.key}\t{info.label()}")
        return 0
    print(load_ct(args.input, series=args.series).summary())
    return 0


def _write(volume, output: str, *, overwrite: bool, model=None, dose=None) -> list[Path]:
    from .io.itk import ITK_SUFFIXES
    from .io.write import write_dicom_series, write_image

    if output.lower().endswith(tuple(ITK_SUFFIXES)):
        return [write_image(volume, output, overwrite=overwrite)]
    return write_dicom_series(volume, output, model=model, dose=dose, overwrite=overwrite)


def _cmd_convert(args) -> int:
    from .io import load_ct

    written = _write(load_ct(args.input, series=args.series), args.output, overwrite=args.overwrite)
    print(f"wrote {len(written)} file(s) to {args.output}")
    return 0


def _cmd_phantom(args) -> int:
    from .phantom import make_thorax_phantom

    volume = make_thorax_phantom(args.spacing, seed=args.seed, z_extent_mm=args.z_extent)
    written = _write(volume, args.output, overwrite=args.overwrite)
    print(f"wrote {len(written)} file(s) to {args.output}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    report = run_demo(args.out, args.input)
    print(report.read_text())
    print(f"report and screenshots in {report.parent}")
    return 0


def _cmd_view(args) -> int:
    import napari

    viewer = napari.Viewer()
    viewer.window.add_plugin_dock_widget("napari-jointrecon", "Load CT")
    if args.input:
        viewer.open(args.input, plugin="napari-jointrecon")
    else:
        viewer.open_sample("napari-jointrecon", "thorax_phantom")
    napari.run()
    return 0


def _cmd_simulate(args) -> int:
    from .dose import simulate_low_dose
    from .io import load_ct

    volume = simulate_low_dose(load_ct(args.input), _dose(args.dose), seed=args.seed,
                               method=args.method)
    written = _write(volume, args.output, overwrite=args.overwrite, dose=_dose(args.dose))
    print(f"wrote {len(written)} file(s) to {args.output}: {volume.notes[-1]}")
    return 0


def _dose(value: float) -> float:
    """Accept 25 or 0.25 for a quarter dose."""
    return value / 100.0 if value > 1.0 else value


def _cmd_denoise(args) -> int:
    from .inference import denoise
    from .io import load_ct

    volume = load_ct(args.input, series=args.series)

    def show(p):
        print(f"\r{args.model}: {p.done}/{p.total} slices on {p.device}", end="", file=sys.stderr)

    result = denoise(volume, model=args.model, dose=_dose(args.dose), device=args.device, progress=show)
    print(file=sys.stderr)
    written = _write(result, args.output, overwrite=args.overwrite, model=args.model, dose=_dose(args.dose))
    print(f"wrote {len(written)} file(s) to {args.output}")
    return 0


def _cmd_models(args) -> int:
    for card in __import__("napari_jointrecon").list_models():
        mark = "*" if card["default"] else " "
        speed = card.get("speed", {}).get("slices_per_s_512_2threads")
        extra = f", {speed:.1f} slices/s" if speed else ""
        print(f"{mark} {card['name']:16s} {card['kind']:9s} {card['title']}{extra}")
    return 0


def _cmd_train(args) -> int:
    from .training.export import export_model
    from .training.train import DEFAULT_CONFIGS, TrainConfig, train

    config = DEFAULT_CONFIGS.get(args.model, TrainConfig())
    for key in ("steps", "batch", "patch", "lr", "seed", "val_every"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    out = args.out or f"runs/{args.model}"
    train(args.model, out, cache_dir=args.cache, config=config, resume=not args.restart)
    if not args.no_export:
        print(f"exported {export_model(args.model, out)}")
    return 0


def _cmd_evaluate(args) -> int:
    from .training.evaluate import evaluate

    evaluate(args.output, cache_dir=args.cache, models=args.models or None,
             update_cards=not args.no_cards)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jointrecon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="read a CT and print its geometry, HU range and notes")
    p.add_argument("input")
    p.add_argument("--series", help="series key (see --list)")
    p.add_argument("--list", action="store_true", help="list the series found")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="read a CT and write NIfTI/MHA/NRRD or a DICOM series folder")
    p.add_argument("input")
    p.add_argument("output", help="a .nii/.nii.gz/.mha/.nrrd file, or a new folder for DICOM")
    p.add_argument("--series")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("phantom", help="write the thorax phantom (sample data)")
    p.add_argument("output", help="a .nii/.nii.gz/.mha/.nrrd file, or a new folder for DICOM")
    p.add_argument("--spacing", type=float, default=1.0)
    p.add_argument("--z-extent", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("simulate", help="simulate a lower dose (projection-domain noise)")
    p.add_argument("input")
    p.add_argument("output", help="a .nii/.nii.gz/.mha/.nrrd file, or a new folder for DICOM")
    p.add_argument("--dose", type=float, required=True, help="percent (25) or fraction (0.25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=["insert", "poisson"], default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("denoise", help="denoise a CT with a registered model")
    p.add_argument("input")
    p.add_argument("--model", default="unet")
    p.add_argument("--dose", type=float, required=True, help="percent (25) or fraction (0.25)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--series")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser("models", help="list the available models (* = default)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="train a model (resumable) and ship its weights and card")
    p.add_argument("model")
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument("--cache", default="runs/cache", help="noise cache folder")
    for key, typ in (("steps", int), ("batch", int), ("patch", int), ("lr", float), ("seed", int),
                     ("val_every", int)):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=typ)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-export", action="store_true", help="do not copy the weights into the package")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate every model on the test split -> docs/RESULTS.md")
    p.add_argument("--output", default="docs/RESULTS.md")
    p.add_argument("--cache", default="runs/cache")
    p.add_argument("--models", nargs="*")
    p.add_argument("--no-cards", action="store_true", help="do not write results into the model cards")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="headless demo: napari screenshots and a report")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--input")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("view", help="open napari with the plugin (needs a display)")
    p.add_argument("input", nargs="?")
    p.set_defaults(func=_cmd_view)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CTReadError, CTWriteError, ValueError, KeyError) as exc:
        print(f"jointrecon: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
