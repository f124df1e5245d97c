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
    except (CTReadError, CTWriteError) as exc:
        print(f"jointrecon: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
