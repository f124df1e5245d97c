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


def _target(output: str) -> tuple[str, Path]:
    """``("image", file)`` for a NIfTI/MetaImage/NRRD name; ``("dicom", folder)`` for a name without
    a suffix, an existing folder, or a ``.dcm`` name (the folder is named without it, as napari's
    writer does); anything else is refused before any work."""
    from .io.itk import ITK_SUFFIXES

    path = Path(output)
    if output.lower().endswith(tuple(ITK_SUFFIXES)):
        return "image", path
    if path.suffix.lower() == ".dcm":
        return "dicom", path.with_suffix("")
    if path.suffix and not path.is_dir():
        raise ValueError(f"{output}: cannot write {path.suffix} files; write "
                         f"{'/'.join(sorted(ITK_SUFFIXES))}, or give a folder (no suffix) for a DICOM series")
    return "dicom", path


def _check_output(volume, output: str, *, overwrite: bool) -> None:
    """Refuse a target the writers would refuse, before the work that would go into it."""
    from .io.write import _check_target

    kind, path = _target(output)
    _check_target(path, volume, overwrite=overwrite, folder=kind == "dicom")


def _write(volume, output: str, *, overwrite: bool, model=None, dose=None) -> list[Path]:
    from .io.write import write_dicom_series, write_image

    kind, path = _target(output)
    if kind == "image":
        return [write_image(volume, path, overwrite=overwrite)]
    return write_dicom_series(volume, path, model=model, dose=dose, overwrite=overwrite)


def _wrote(written: list[Path]) -> str:
    where = written[0] if len(written) == 1 else written[0].parent
    return f"wrote {len(written)} file(s) to {where}"


def _cmd_convert(args) -> int:
    from .io import load_ct

    _target(args.output)
    written = _write(load_ct(args.input, series=args.series), args.output, overwrite=args.overwrite)
    print(_wrote(written))
    return 0


def _cmd_phantom(args) -> int:
    from .phantom import make_thorax_phantom

    _target(args.output)
    volume = make_thorax_phantom(args.spacing, seed=args.seed, z_extent_mm=args.z_extent)
    written = _write(volume, args.output, overwrite=args.overwrite)
    print(_wrote(written))
    return 0


def _has_display() -> bool:
    """False on Linux without an X or Wayland display (napari cannot open a window there)."""
    import os

    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _cmd_demo(args) -> int:
    import os
    import shutil

    from .demo import run_demo

    if not _has_display():  # the demo renders napari, which needs a display: give it a virtual one
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            raise ValueError("the demo renders napari and there is no display: install Xvfb "
                             "(xvfb-run) or set DISPLAY")
        argv = [xvfb, "-a", "-s", "-screen 0 1400x1000x24", sys.executable, "-m", "napari_jointrecon.cli",
                "demo", "--out", args.out] + (["--input", args.input] if args.input else []) \
            + (["--chest"] if args.chest else [])
        os.execv(xvfb, argv)

    report = run_demo(args.out, args.input, chest=args.chest)
    print(report.read_text())
    print(f"report and screenshots in {report.parent}")
    return 0


def _cmd_view(args) -> int:
    if not _has_display():
        raise ValueError("napari needs a display and there is none: `jointrecon demo` runs the workflow "
                         "headless (screenshots and a report)")
    import napari

    viewer = napari.Viewer()
    for name in ("Load CT", "Denoise", "Compare before/after", "Metrics", "3D point cloud"):
        viewer.window.add_plugin_dock_widget("napari-jointrecon", name)
    if args.input:
        viewer.open(args.input, plugin="napari-jointrecon")
    else:
        viewer.open_sample("napari-jointrecon", "thorax_phantom")
    napari.run()
    return 0


def _cmd_simulate(args) -> int:
    from .dose import simulate_low_dose
    from .io import load_ct

    dose = _dose(args.dose)
    source = load_ct(args.input, series=args.series)
    _check_output(source, args.output, overwrite=args.overwrite)
    volume = simulate_low_dose(source, dose, seed=args.seed, method=args.method)
    written = _write(volume, args.output, overwrite=args.overwrite, dose=dose)
    print(f"{_wrote(written)}: {volume.notes[-1]}")
    return 0


def _dose(value: float) -> float:
    """Accept 25 or 0.25 for a quarter dose."""
    if value > 100.0:
        raise ValueError(f"--dose {value:g}: give a percentage of the full dose (at most 100) or a fraction")
    return value / 100.0 if value > 1.0 else value


def _cmd_denoise(args) -> int:
    from .inference import denoise
    from .io import load_ct

    dose = "estimate" if args.dose is None else _dose(args.dose)
    volume = load_ct(args.input, series=args.series)
    _check_output(volume, args.output, overwrite=args.overwrite)

    def show(p):
        print(f"\r{args.model}: {p.done}/{p.total} {p.unit} on {p.device}", end="", file=sys.stderr)

    result = denoise(volume, model=args.model, dose=dose, device=args.device, progress=show,
                     compile=args.compile, runtime=args.runtime)
    print(file=sys.stderr)
    written = _write(result, args.output, overwrite=args.overwrite, model=args.model,
                     dose=None if dose == "estimate" else dose)
    print(_wrote(written))
    return 0


def _cmd_batch(args) -> int:
    from tqdm import tqdm

    from .batch import batch

    bar = None

    def show(step) -> None:
        nonlocal bar
        if bar is None:
            if step.dashboard:
                print(f"Dask dashboard: {step.dashboard}", file=sys.stderr)
            if step.message:
                print(step.message, file=sys.stderr)
            bar = tqdm(total=step.total, initial=step.done, unit="task", file=sys.stderr)
        if step.done > bar.n:
            bar.update(step.done - bar.n)
        if step.row is not None and step.row["status"] == "failed":
            bar.write(f"{step.row['study']} / {step.row['model']}: failed: {step.row['error']}", file=sys.stderr)

    try:
        table = batch(args.inputs, args.out, models=args.model or ["unet"],
                      dose=None if args.dose is None else _dose(args.dose),
                      simulate=None if args.simulate is None else _dose(args.simulate),
                      reference_from_input=args.reference_from_input, fmt=args.format,
                      device=args.device, scheduler=args.scheduler, workers=args.workers,
                      threads=args.threads_per_task, retries=args.retries, seed=args.seed, progress=show)
    finally:
        if bar is not None:
            bar.close()
    counts = table.status.value_counts()
    print(f"{len(table)} rows: " + ", ".join(f"{counts[s]} {s}" for s in counts.index)
          + f"; {Path(args.out) / 'results.csv'}, {Path(args.out) / 'summary.md'}")
    return 1 if (table.status == "failed").any() else 0


def heldout_point_distances(card: dict) -> dict[str, float]:
    """Per cloud of the card's held-out point results, the mean surface distance (mm) over the held-out
    patients' slabs (the chest series' point test slabs left out: a training patient of the denoisers)."""
    groups = card.get("results", {}).get("heldout", {}).get("groups", {})
    vals: dict[str, list[float]] = {}
    for name, group in groups.items():
        if name.startswith("chest-ct-dicom"):
            continue
        for cloud, row in group["rows"].items():
            if "msd_mm" in row:  # the input's row has only the PSNR of its slice
                vals.setdefault(cloud, []).extend(row["msd_mm"])
    return {cloud: sum(v) / len(v) for cloud, v in vals.items()}


def _cmd_models(args) -> int:
    from .joint import DEFAULT_POINT_MODEL, POINT_MODELS, point_model_card

    print("denoisers (* = default):")
    for card in __import__("napari_jointrecon").list_models():
        mark = "*" if card["default"] else " "
        speed = card.get("speed", {}).get("slices_per_s_512_2threads")
        extra = f", {speed:.1f} slices/s" if speed else ""
        print(f"{mark} {card['name']:16s} {card['role']:15s} {card['title']}{extra}")
    print("point models (jointrecon pointcloud --model; * = default), mean surface distance at 25 % dose "
          "on the held-out patients' slabs (docs/RESULTS.md):")
    held = heldout_point_distances(point_model_card())
    for name, kinds in POINT_MODELS.items():
        mark = "*" if name == DEFAULT_POINT_MODEL else " "
        extra = f", {held[name]:.2f} mm" if name in held else ""
        print(f"{mark} {name:18s} {' + '.join(kinds)}{extra}")
    if "extrusion" in held:
        print(f"  (no network: the slice's contour copied through the slab, {held['extrusion']:.2f} mm)")
    return 0


def _cmd_train_diffusion(args) -> int:
    from dataclasses import asdict

    from .training.diffusion import DEFAULT_CONFIG, DiffusionConfig, export_diffusion, train_diffusion
    from .training.train import COMMITTED_CHECKPOINTS

    if args.init is not None or args.ssim_weight is not None:
        raise ValueError("the diffusion model trains on its own objective: --init and --ssim-weight do not apply")
    config = DiffusionConfig(**asdict(DEFAULT_CONFIG))
    for key in ("steps", "batch", "patch", "lr", "seed", "val_every", "time_budget_s"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    out = args.out or f"runs/{args.model}"
    train_diffusion(out, cache_dir=args.cache, config=config, resume=not args.restart,
                    fallback_checkpoint=COMMITTED_CHECKPOINTS / f"{args.model}.pt" if args.out is None else None)
    if not args.no_export:
        print(f"exported {export_diffusion(out)}")
        if args.cache and args.out is None:  # the shipped model: its uncertainty fitted on validation
            from .training.diffusion_eval import tune_sd_scale

            print(f"SD scale {tune_sd_scale(args.model, cache_dir=args.cache)['sd_scale']}")
    return 0


def _cmd_train(args) -> int:
    from .models.registry import get_spec
    from .training.export import export_model

    if get_spec(args.model).recipe == "diffusion":
        return _cmd_train_diffusion(args)
    from .training.train import DEFAULT_CONFIGS, TrainConfig, train

    config = DEFAULT_CONFIGS.get(args.model, TrainConfig())
    for key in ("steps", "batch", "patch", "lr", "seed", "val_every", "time_budget_s", "init",
                "ssim_weight"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    out = args.out or f"runs/{args.model}"
    from .training.train import COMMITTED_CHECKPOINTS

    train(args.model, out, cache_dir=args.cache, config=config, resume=not args.restart,
          fallback_checkpoint=COMMITTED_CHECKPOINTS / f"{args.model}.pt" if args.out is None else None)
    if not args.no_export:
        print(f"exported {export_model(args.model, out)}")
        if config.data == "series":
            from .training.export import tune_estimate

            print(f"estimate factor {tune_estimate(args.model, args.cache)}")
    return 0


def _cmd_tune_classical(args) -> int:
    from .training.heldout import tune_classical

    tune_classical(args.cache, methods=tuple(args.methods), crop=args.crop)
    return 0


def _cmd_tune_uncertainty(args) -> int:
    from .training.diffusion_eval import tune_sd_scale

    fit = tune_sd_scale(args.model, cache_dir=args.cache, write=not args.dry_run)
    print(f"{args.model}: SD scale {fit['sd_scale']}" + (" (not written)" if args.dry_run else " written to its card"))
    return 0


def _cmd_train_joint(args) -> int:
    from .training.joint import export_joint, train_all

    train_all(args.out, seeds=tuple(args.seeds), steps=args.steps, cache_dir=args.cache)
    if not args.no_export:
        print(f"exported {export_joint(args.out, seeds=tuple(args.seeds))}")
    return 0


def _cmd_train_contour(args) -> int:
    from .training.points import PointConfig, export_contour, train_contour_all

    config = PointConfig(steps=args.steps, width=args.width, augment=args.augment, spacing_input=args.spacing_input,
                         crop=args.crop, batch=args.batch, outline=args.outline, train_on=args.train_on,
                         regressor_input=args.regressor_input, seed=args.seed)
    train_contour_all(args.out, kinds=tuple(args.kinds), config=config, cache_dir=args.cache)
    if not args.no_export:
        print(f"exported {export_contour(args.out, kinds=tuple(args.kinds))}")
    return 0


def _cmd_tune_points(args) -> int:
    from .training.points import tune_sampler

    chosen = tune_sampler(cache_dir=args.cache, write=not args.dry_run, processes=args.processes)
    print(f"contour sampler: {chosen['regions']}, level {chosen['level']:g}" + (", mirrored" if chosen["mirror"] else "")
          + (", the slice's outline" if chosen["outline"] == "slice" else "")
          + (" (not written)" if args.dry_run else " written to the point models' card"))
    return 0


def _point_cloud_path(path: str | Path, *, overwrite: bool = False) -> Path:
    """``path`` if a point cloud can be written there (checked before any work is done)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".ply"):
        raise ValueError(f"{path}: write a point cloud as .csv or .ply")
    if path.exists() and not overwrite:
        raise CTWriteError(f"{path} exists (use --overwrite)")
    if not path.parent.is_dir():
        raise CTWriteError(f"{path}: the folder {path.parent} does not exist")
    return path


def write_point_cloud(points, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write (N, 3) z y x millimetres as ``.csv`` (z_mm,y_mm,x_mm) or ASCII ``.ply`` (x y z)."""
    import numpy as np

    path = _point_cloud_path(path, overwrite=overwrite)
    pts = np.asarray(points, dtype=np.float64)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        np.savetxt(path, pts, delimiter=",", header="z_mm,y_mm,x_mm", comments="", fmt="%.4f")
    elif suffix == ".ply":
        header = ["ply", "format ascii 1.0", "comment napari-jointrecon point cloud, world mm (LPS)",
                  f"element vertex {len(pts)}", "property float x", "property float y",
                  "property float z", "end_header"]
        body = "\n".join(f"{x:.4f} {y:.4f} {z:.4f}" for z, y, x in pts)
        path.write_text("\n".join(header) + "\n" + body + "\n")
    else:
        raise ValueError(f"{path}: write a point cloud as .csv or .ply")
    return path


def _cmd_pointcloud(args) -> int:
    from .io import load_ct
    from .joint import predict_point_cloud
    from .pointcloud import reference_point_cloud

    _point_cloud_path(args.output, overwrite=args.overwrite)
    if args.points < 1:
        raise ValueError(f"--points must be at least 1, got {args.points}")
    ct = load_ct(args.input, series=args.series)
    k = ct.shape[0] // 2 if args.slice is None else args.slice
    if args.reference:
        pts = reference_point_cloud(ct, k, args.points)
    else:
        pts = predict_point_cloud(ct, slice_index=k, dose=_dose(args.dose), model=args.model,
                                  device=args.device).points
    out = write_point_cloud(pts, args.output, overwrite=args.overwrite)
    print(f"wrote {len(pts)} points (slice {k}) to {out}")
    return 0


def _cmd_evaluate(args) -> int:
    from .training.evaluate import evaluate, evaluate_points

    if args.points_only:
        if args.models or args.no_cards:
            raise SystemExit("--points-only measures every point model and writes their card: "
                             "leave out --models and --no-cards")
        evaluate_points(args.output, cache_dir=args.cache)
        return 0

    evaluate(args.output, cache_dir=args.cache, models=args.models or None,
             update_cards=not args.no_cards)
    return 0


def _cmd_fetch_test_data(args) -> int:
    from .testdata import fetch_test_data

    fetch_test_data(args.cache, only=args.only, workers=args.workers, retries=args.retries)
    return 0


def _pacs_settings(args):
    """The server from the options, else the saved settings; the password or token comes from
    $JOINTRECON_PACS_SECRET, this session or the keyring, or a prompt (never from the command line)."""
    import os

    from .pacs import ServerSettings, load_settings, save_settings
    from .pacs.settings import load_secret

    saved = load_settings()
    given = {k: v for k, v in {"protocol": args.protocol, "url": args.url, "auth": args.auth,
                               "username": args.user, "host": args.host, "port": args.port,
                               "called_ae": args.aet, "calling_ae": args.calling_aet,
                               "timeout": args.timeout}.items() if v is not None}
    if args.url and "protocol" not in given:
        given["protocol"] = "dicomweb"
    if args.host and "protocol" not in given:
        given["protocol"] = "dimse"
    settings = ServerSettings(**{**saved.to_dict(), **given})
    if settings.auth != "none" and not settings.secret:
        settings.secret = os.environ.get("JOINTRECON_PACS_SECRET") or load_secret(settings) or ""
        if not settings.secret and sys.stdin.isatty():
            import getpass

            settings.secret = getpass.getpass("token: " if settings.auth == "bearer" else "password: ")
    if args.save:
        save_settings(settings)
    return settings


def _cmd_pacs(args) -> int:
    from . import pacs

    try:
        settings = _pacs_settings(args)
        if args.pacs_command == "echo":
            print(pacs.echo(settings))
        elif args.pacs_command == "find":
            studies = pacs.find(settings, patient_id=args.patient_id, patient_name=args.patient_name,
                                date_from=args.date_from, date_to=args.date_to, accession=args.accession,
                                modality=args.modality, limit=args.limit)
            for study in studies:
                print(f"{study.study_uid}\t{study.label()}")
                for entry in (pacs.list_series(settings, study) if args.series else []):
                    print(f"  {entry.series_uid}\t{entry.label()}")
        elif args.pacs_command == "get":
            def show(p):
                print(f"\r{p.stage}: {p.done}/{p.total} instances", end="", file=sys.stderr)

            volume = pacs.retrieve(settings, args.study, args.series, cache=args.cache, refresh=args.refresh,
                                   progress=show)
            print(file=sys.stderr)
            print(volume.summary())
            if args.output:
                print(_wrote(_write(volume, args.output, overwrite=args.overwrite)))
        else:
            from .io import load_ct
            from .pacs.derived import adopt_source

            result = load_ct(args.input, series=args.input_series)
            source = pacs.retrieve(settings, args.study, args.source_series, cache=args.cache)
            sent = pacs.send(settings, adopt_source(result, source), source_series_uid=args.source_series,
                             model=args.model, dose=None if args.dose is None else _dose(args.dose),
                             description=args.description)
            print(f"stored {sent.n_instances} instance(s) as series {sent.series_uid} of study {sent.study_uid} "
                  f"('{sent.description}')")
    except (pacs.PacsError, pacs.Cancelled) as exc:
        print(f"jointrecon: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .joint import DEFAULT_POINT_MODEL, POINT_MODELS

    parser = argparse.ArgumentParser(prog="jointrecon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="read a CT and print its geometry, HU range and notes")
    p.add_argument("input")
    p.add_argument("--series", help="series key (see --list)")
    p.add_argument("--list", action="store_true", help="list the series found")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="read a CT and write NIfTI/MHA/NRRD or a DICOM series folder")
    p.add_argument("input")
    p.add_argument("output", help="a .nii/.nii.gz/.mha/.nrrd file, or a new folder for DICOM (no suffix)")
    p.add_argument("--series")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("phantom", help="write the thorax phantom (sample data)")
    p.add_argument("output", help="a .nii/.nii.gz/.mha/.nrrd file, or a new folder for DICOM (no suffix)")
    p.add_argument("--spacing", type=float, default=1.0)
    p.add_argument("--z-extent", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("simulate", help="simulate a lower dose (projection-domain noise)")
    p.add_argument("input")
    p.add_argument("output", help="a .nii/.nii.gz/.mha/.nrrd file, or a new folder for DICOM (no suffix)")
    p.add_argument("--dose", type=float, required=True, help="percent (25) or fraction (0.25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=["insert", "poisson"], default=None)
    p.add_argument("--series")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("denoise", help="denoise a CT with a registered model")
    p.add_argument("input")
    p.add_argument("--model", default="unet")
    p.add_argument("--dose", type=float, default=None,
                   help="percent (25) or fraction (0.25) of the protocol's full dose; by default the "
                        "image's own noise decides")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (seconds to compile; faster for large volumes)")
    from .inference import RUNTIMES

    p.add_argument("--runtime", default="auto", choices=list(RUNTIMES),
                   help="auto: on the CPU bf16 autocast for networks trained so (where the CPU has bf16), "
                        "else ONNX Runtime (faster, same result); torch on a GPU")
    p.add_argument("--series")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser("batch", help="denoise and measure whole cohorts on Dask (a local cluster or "
                                     "--scheduler): results.csv and summary.md")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="DICOM folders, volume files and folders of studies; every series is a study")
    p.add_argument("--out", required=True, help="output folder (OUT/<study>/<model>_<dose>.nii.gz, "
                                                "results.csv, summary.md)")
    p.add_argument("--model", action="extend", nargs="+", metavar="NAME",
                   help="one or more models (default unet); repeat or list several")
    dose = p.add_mutually_exclusive_group()
    dose.add_argument("--dose", type=float, help="percent (25) or fraction (0.25) the scans were taken "
                                                 "at; by default each image's noise decides")
    dose.add_argument("--simulate", type=float, help="simulate this dose (percent or fraction) from each "
                                                     "full-dose study first (seeded), and denoise that")
    p.add_argument("--reference-from-input", action="store_true",
                   help="with --simulate: PSNR/SSIM/RMSE against the full-dose study")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask cluster (tcp://HOST:8786); by default a local cluster")
    p.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per "
                                               "two cores; one task per core, at most one per task)")
    p.add_argument("--threads-per-task", type=int,
                   help="torch threads per task (default: the local cluster's cores per task; 1 on an "
                        "existing cluster)")
    p.add_argument("--format", default="nii.gz", choices=["nii.gz", "dcm"],
                   help="results as NIfTI files or as new DICOM series")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--retries", type=int, default=2, help="further tries of a task that raised")
    p.add_argument("--seed", type=int, default=0, help="noise seed of --simulate")
    p.set_defaults(func=_cmd_batch)

    p = sub.add_parser("models", help="list the available models (* = default)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="train a model (resumable) and ship its weights and card")
    p.add_argument("model")
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument("--cache", default="runs/cache", help="noise cache folder")
    for key, typ in (("steps", int), ("batch", int), ("patch", int), ("lr", float), ("seed", int),
                     ("val_every", int), ("time_budget_s", float), ("ssim_weight", float)):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=typ)
    p.add_argument("--init", help="start from these weights (a state-dict .pt) with a fresh schedule")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-export", action="store_true", help="do not copy the weights into the package")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("tune-classical",
                       help="tune the classical filters' strength per dose on the validation patients")
    p.add_argument("--cache", default="runs/cache", help="noise cache folder")
    p.add_argument("--methods", nargs="+", default=["tv", "nlm", "bm3d"], choices=["tv", "nlm", "bm3d"])
    p.add_argument("--crop", type=int, default=256, help="centre crop of the slices (pixels)")
    p.set_defaults(func=_cmd_tune_classical)

    p = sub.add_parser("tune-uncertainty",
                       help="fit a diffusion model's SD scale on the validation patients (68 %% within 1 SD)")
    p.add_argument("model", nargs="?", default="diffusion")
    p.add_argument("--cache", default="runs/cache", help="noise cache folder")
    p.add_argument("--dry-run", action="store_true", help="print the fit, leave the card as it is")
    p.set_defaults(func=_cmd_tune_uncertainty)

    p = sub.add_parser("train-joint", help="train the joint point models and baselines (3 seeds)")
    p.add_argument("--out", default="runs/joint")
    p.add_argument("--cache", default="runs/cache")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--no-export", action="store_true")
    p.set_defaults(func=_cmd_train_joint)

    p = sub.add_parser("train-contour", help="train the contour point models (joint and sequential; resumable)")
    p.add_argument("--out", default="runs/points")
    p.add_argument("--cache", default="runs/cache")
    p.add_argument("--kinds", nargs="+", default=["contour", "seq_contour_denoiser", "seq_contour_regressor"],
                   choices=["contour", "seq_contour_denoiser", "seq_contour_regressor"])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--width", type=int, default=16, help="the encoder's width (channels of its first scale)")
    p.add_argument("--augment", action="store_true",
                   help="turn and scale half the crops (up to 10 degrees and 10 %%; the noise untouched)")
    p.add_argument("--spacing-input", action="store_true",
                   help="the series' slice spacing as an input of the networks that draw the surface")
    p.add_argument("--crop", type=int, default=128,
                   help="pixels of the network's 256 x 256 input per crop (256: whole slices)")
    p.add_argument("--batch", type=int, default=8, help="crops per step")
    p.add_argument("--outline", choices=["network", "slice"], default="network",
                   help="validate the clouds with the network's own body outline (the default) or the slice's, "
                        "as the product draws them; with the slice's, a pixel outside the slice's outline counts a "
                        "tenth in the occupancy loss (the shipped networks: slice)")
    p.add_argument("--train-on", choices=["train", "train+val"], default="train",
                   help="train+val: refit a recipe chosen on validation on the training and the validation "
                        "patients (not validated; its last step is kept). Give the recipe's own options "
                        "(--steps, --outline, ...) and another --out; it is exported with the sampler "
                        "jointrecon tune-points chose for the recipe's exported run")
    p.add_argument("--regressor-input", choices=["full_dose", "denoised"], default="full_dose",
                   help="what the sequential regressor reads in training: full-dose slices (the design's "
                        "baseline), or its denoiser's output of low-dose slices, as it reads in the product")
    p.add_argument("--seed", type=int, default=0, help="the run's random seed (initial weights, crops, noise)")
    p.add_argument("--no-export", action="store_true")
    p.set_defaults(func=_cmd_train_contour)

    p = sub.add_parser("tune-points", help="choose how the contour networks' clouds are drawn (iso level, "
                                           "regions, mirroring, outline) on the validation patients (not for "
                                           "a network refit on them)")
    p.add_argument("--cache", default="runs/cache")
    p.add_argument("--processes", type=int, default=2, help="processes that score the slabs (default 2)")
    p.add_argument("--dry-run", action="store_true", help="print the scores, leave the card as it is")
    p.set_defaults(func=_cmd_tune_points)

    p = sub.add_parser("pointcloud", help="predict (or extract) the 3D point cloud of a slice -> .ply/.csv")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="a .ply or .csv file")
    p.add_argument("--slice", type=int, help="slice index (default: the middle)")
    p.add_argument("--dose", type=float, default=100,
                   help="percent (25) or fraction (0.25); 1 and below are fractions (1 = full dose)")
    p.add_argument("--model", default=DEFAULT_POINT_MODEL, choices=list(POINT_MODELS))
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--series")
    p.add_argument("--reference", action="store_true", help="the -500 HU surface of the volume instead")
    p.add_argument("--points", type=int, default=10000, help="points of the reference cloud")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_pointcloud)

    p = sub.add_parser("evaluate", help="evaluate every model on the test split -> docs/RESULTS.md")
    p.add_argument("--output", default="docs/RESULTS.md")
    p.add_argument("--cache", default="runs/cache")
    p.add_argument("--models", nargs="*")
    p.add_argument("--no-cards", action="store_true", help="do not write results into the model cards")
    p.add_argument("--points-only", action="store_true",
                   help="only the point models on the held-out patients: replace that section of the output "
                        "and the point models' card's results (the rest stays as the last full run wrote it)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="headless demo: napari screenshots and a report")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--input", help="a full-dose CT to use instead of the sample (low dose simulated)")
    p.add_argument("--chest", action="store_true",
                   help="use the real chest series from $JOINTRECON_SHARED_DATA (default ../shared/data "
                        "beside the source checkout)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("fetch-test-data",
                       help="download the real CT test data (checksums verified) into a cache")
    p.add_argument("--cache", help="the folder (default $JOINTRECON_DATA_CACHE or the per-user cache)")
    p.add_argument("--only", nargs="+", default=[], metavar="PATH",
                   help="files or folders under the data root (e.g. torso-ct-nifti) instead of all")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads")
    p.add_argument("--retries", type=int, default=2, help="further tries of a failed file")
    p.set_defaults(func=_cmd_fetch_test_data)

    server = argparse.ArgumentParser(add_help=False)
    g = server.add_argument_group("PACS server (default: the saved settings; the password or token comes "
                                  "from $JOINTRECON_PACS_SECRET, the keyring or a prompt)")
    g.add_argument("--protocol", choices=["dicomweb", "dimse"])
    g.add_argument("--url", help="DICOMweb base URL, e.g. http://localhost:8042/dicom-web")
    g.add_argument("--auth", choices=["none", "basic", "bearer"])
    g.add_argument("--user", help="basic-auth user name")
    g.add_argument("--host", help="DIMSE host")
    g.add_argument("--port", type=int, help="DIMSE port")
    g.add_argument("--aet", help="the PACS AE title (called AE)")
    g.add_argument("--calling-aet", help="this application's AE title (default JOINTRECON)")
    g.add_argument("--timeout", type=float, help="seconds to wait for a connection (default 4)")
    g.add_argument("--save", action="store_true", help="remember these settings (never the password)")
    p = sub.add_parser("pacs", help="query, retrieve from and send to a PACS (DICOMweb or DIMSE)")
    pacs_sub = p.add_subparsers(dest="pacs_command", required=True)
    q = pacs_sub.add_parser("echo", parents=[server], help="check the connection (QIDO-RS or C-ECHO)")
    q = pacs_sub.add_parser("find", parents=[server], help="search studies (and list their series)")
    q.add_argument("--patient-id", default="")
    q.add_argument("--patient-name", default="", help="a prefix, or a pattern with * and ?")
    q.add_argument("--date-from", help="YYYY-MM-DD")
    q.add_argument("--date-to", help="YYYY-MM-DD")
    q.add_argument("--accession", default="")
    q.add_argument("--modality", default="CT", help="modality in the study (default CT; '' for any)")
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--series", action="store_true", help="list each study's series")
    q = pacs_sub.add_parser("get", parents=[server], help="retrieve a series into the cache and open it")
    q.add_argument("study", help="StudyInstanceUID")
    q.add_argument("series", help="SeriesInstanceUID")
    q.add_argument("--cache", help="cache folder (default: the user cache folder)")
    q.add_argument("--refresh", action="store_true", help="retrieve again even when cached")
    q.add_argument("-o", "--output", help="also write it: .nii/.nii.gz/.mha/.nrrd, or a folder for DICOM")
    q.add_argument("--overwrite", action="store_true")
    q = pacs_sub.add_parser("send", parents=[server],
                            help="store a result as a new derived series of its source's study")
    q.add_argument("input", help="the result: a CT file or DICOM folder")
    q.add_argument("--study", required=True, help="StudyInstanceUID of the source series")
    q.add_argument("--source-series", required=True, help="SeriesInstanceUID the result was computed from")
    q.add_argument("--input-series", help="series key of INPUT when it holds several")
    q.add_argument("--model", help="the model named in the descriptions")
    q.add_argument("--dose", type=float, help="the dose named in the descriptions (percent or fraction)")
    q.add_argument("--description", help="SeriesDescription instead of the generated one")
    q.add_argument("--cache", help="cache folder of the source series")
    p.set_defaults(func=_cmd_pacs)

    p = sub.add_parser("view", help="open napari with the plugin (needs a display)")
    p.add_argument("input", nargs="?")
    p.set_defaults(func=_cmd_view)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CTReadError, CTWriteError, ValueError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"jointrecon: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
