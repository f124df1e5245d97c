"""Inference engine: device and runtime choice, batching, padding, progress and cancellation.

``iter_denoise`` is a generator that yields progress after every batch of slices, which is what
napari's ``thread_worker`` wants; ``denoise`` runs it to the end and takes an optional progress
callback. Results are deterministic: the same input, model and runtime give the same output.

Runtimes (:func:`select_runtime`): a network trained with bf16 autocast (its card's training
config says ``bf16``) runs in torch with bf16 autocast and channels-last memory on a CPU with
native bf16 (AVX512-BF16 or AMX), as it was trained: the default U-Net went from 11.6 to about 25
slices/s on 2 cores, with outputs within a few HU of fp32 (``docs/BENCHMARKS.md``). Other networks,
or CPUs without bf16, run in ONNX Runtime (fp32, exported from the shipped torch weights once per
process and model, and checked against torch before use: within 0.01 HU), which measured 1.04-2.7
times the speed of torch's eager mode on these networks. On a GPU, with ``compile=True``, or with
``runtime="torch"`` they run in torch (fp32).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .models.registry import DEFAULT_MODEL
from .volume import CTVolume

__all__ = ["select_device", "select_runtime", "available_devices", "denoise", "iter_denoise", "Progress",
           "Cancelled", "RUNTIMES", "Conditioning", "conditioning_for", "denoise_with_uncertainty",
           "iter_denoise_with_uncertainty", "Uncertainty", "is_diffusion", "expected_seconds"]

RUNTIMES = ("auto", "torch", "onnxruntime", "bf16")


class Cancelled(RuntimeError):
    """Raised when a denoising run is cancelled between batches."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    device: str
    message: str = ""
    #: what runs the slices now: "bf16", "onnxruntime", "torch.compile", "torch" or "classical"
    runtime: str = ""
    #: what the model was told about the noise (:func:`conditioning_for`)
    conditioning: "Conditioning | None" = None
    #: what ``done`` and ``total`` count: "slices", or "steps" (network calls of a diffusion model)
    unit: str = "slices"
    #: where a diffusion run is (patch, sample, step)
    detail: str = ""


@dataclass(frozen=True)
class Conditioning:
    """What a model is given besides the image, and how it was found.

    Attributes
    ----------
    value : float
        The number passed to the network: a dose fraction (dose-conditioned models) or the noise
        level to remove in HU / 1000 (noise-conditioned models); classical methods get the dose.
    dose : float or None
        The dose fraction given, or the estimate's nearest level (dose-conditioned models).
    estimated : bool
        True when nothing was given and the image's noise decided.
    noise_sd : float or None
        The noise measured on the input (HU, flat soft tissue; noise-conditioned models).
    level_hu : float or None
        The noise the model was asked to remove (HU; noise-conditioned models).
    """

    value: float
    dose: float | None
    estimated: bool
    noise_sd: float | None = None
    level_hu: float | None = None

    def describe(self) -> str:
        if self.level_hu is not None:
            how = "estimated from the image" if self.estimated else f"{self.dose * 100:g}% dose"
            measured = ("no flat soft tissue to measure the noise in: the typical level assumed"
                        if self.noise_sd is None else f"noise {self.noise_sd:.1f} HU measured")
            return f"{measured}, {self.level_hu:.1f} HU removed ({how})"
        if self.estimated:
            return f"dose estimated from the noise: {self.dose * 100:g}%"
        return f"{self.dose * 100:g}% dose"

    def label(self) -> str:
        """Short text for layer names and series descriptions."""
        return "auto" if self.estimated else f"{self.dose * 100:g}%"


def conditioning_for(model: str, hu, dose) -> Conditioning:
    """What ``model`` needs to denoise ``hu`` (2D or 3D, HU) taken at ``dose``.

    ``dose`` is a fraction in (0, 1] or ``"estimate"`` (also None). Noise-conditioned models (card
    ``"conditioning": "noise"``) measure the input's noise ``sd`` (:func:`napari_jointrecon.noise.noise_sd`)
    and remove ``sd * sqrt(1 - dose)`` of it (the part a full dose would not have), or, estimated,
    ``estimate_factor * sd`` (the factor chosen on noise-free phantoms and validation patients, in
    the card). Without
    flat soft tissue to measure they fall back to the card's typical full-dose noise for a given
    dose, and refuse to estimate. Dose-conditioned models get the dose (estimated: the nearest level
    of :func:`napari_jointrecon.dose.estimate_dose`).
    """
    from .models.registry import read_card

    estimated = dose is None or (isinstance(dose, str) and dose == "estimate")
    if not estimated:
        if isinstance(dose, str) or not (math.isfinite(float(dose)) and 0.0 < float(dose) <= 1.0):
            raise ValueError(f"dose must be a fraction in (0, 1] (0.25 for 25 %) or 'estimate', got {dose!r}")
        dose = float(dose)
    card = read_card(model) or {}
    if card.get("conditioning") == "noise":
        from .noise import NoTissueError, noise_sd

        try:
            sd = noise_sd(hu)
        except NoTissueError as exc:
            if estimated:
                raise ValueError(f"cannot estimate the noise: {exc}; give the dose instead") from None
            sd = None
        if sd is None:
            level = float(card["typical_full_dose_sd"]) * math.sqrt((1 - dose) / dose)
        elif estimated:
            level = float(card["estimate_factor"]) * sd
        else:
            level = sd * math.sqrt(1.0 - dose)
        return Conditioning(level / 1000.0, None if estimated else dose, estimated, sd, level)
    if estimated:
        from .dose import estimate_dose

        nearest, _raw = estimate_dose(hu)
        return Conditioning(nearest, nearest, True)
    return Conditioning(dose, dose, False)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(requested: str = "auto", *, cuda_available: bool | None = None,
                  mps_available: bool | None = None) -> str:
    """Choose the torch device: ``auto`` takes CUDA, then Apple MPS, then the CPU.

    A pure function of its arguments when both availabilities are given (the widgets and tests pass
    them); otherwise torch is asked.

    Raises
    ------
    ValueError
        For an unknown device name, or a forced device that is not available.
    """
    requested = (requested or "auto").lower()
    if requested not in ("auto", "cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {requested!r}; use auto, cuda, mps or cpu")
    cuda = _cuda_available() if cuda_available is None else cuda_available
    mps = _mps_available() if mps_available is None else mps_available
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise ValueError("CUDA was requested but no CUDA GPU is available")
    if requested == "mps" and not mps:
        raise ValueError("MPS was requested but Apple's Metal backend is not available")
    return requested


def available_devices() -> list[str]:
    """The devices this machine can run on, in the order ``auto`` would try them."""
    return [d for d, ok in (("cuda", _cuda_available()), ("mps", _mps_available()), ("cpu", True)) if ok]


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(exc).lower()


def _validate_input(hu: np.ndarray, dose) -> None:
    if hu.ndim not in (2, 3):
        raise ValueError(f"expected a 2D slice or a 3D (z, y, x) volume in HU, got shape {hu.shape}")
    if min(hu.shape[-2:]) < 8:
        raise ValueError(f"slices of {hu.shape[-2:]} pixels are too small to denoise (at least 8 x 8)")
    if hu.size == 0:
        raise ValueError("the image is empty")
    if not np.all(np.isfinite(hu)):
        raise ValueError("the image has NaN or infinite voxels")
    if dose is None or (isinstance(dose, str) and dose == "estimate"):
        return
    if not (isinstance(dose, (int, float)) and math.isfinite(dose) and 0.0 < dose <= 1.0):
        raise ValueError(f"dose must be a fraction in (0, 1] (0.25 for 25 %) or 'estimate', got {dose!r}")


# torch.compile'd networks of this process, by (model, device) -> (weights' sha256, module):
# compiling costs seconds once, so later runs reuse it (a new image size recompiles, which is
# quicker from inductor's disk cache); new weights for the model (a retrained export) recompile.
# A cached CUDA module keeps its (MB-sized) weights on the GPU between runs.
_COMPILED: dict[tuple[str, str], tuple[str, object]] = {}
_COMPILED_LOCK = threading.Lock()


def compiled_model(name: str, net, device: str):
    """``torch.compile(net)`` on ``device``, made once per process, model and weights; fp32."""
    import torch

    from .models.registry import read_card

    digest = (read_card(name) or {}).get("sha256", "")
    with _COMPILED_LOCK:
        cached = _COMPILED.get((name, device))
        if cached is None or cached[0] != digest:
            cached = _COMPILED[(name, device)] = (digest, torch.compile(net.to(device), dynamic=False))
    return cached[1]


def _onnxruntime_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX512-BF16, AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def trained_bf16(name: str) -> bool:
    """Whether a model's card says it was trained with bf16 autocast."""
    from .models.registry import read_card

    return bool(((read_card(name) or {}).get("training", {}).get("config") or {}).get("bf16"))


def select_runtime(requested: str = "auto", device: str = "cpu", *, compile: bool = False,
                   onnxruntime_available: bool | None = None, bf16_supported: bool | None = None,
                   trained_bf16: bool = False) -> str:
    """``"bf16"``, ``"onnxruntime"`` or ``"torch"``: which runtime runs a network on ``device``
    (pure function).

    ``auto`` on the CPU, without ``compile``: ``bf16`` (torch, bf16 autocast, channels-last) for a
    network trained that way on a CPU with native bf16, else ONNX Runtime when it is installed, else
    torch; on other devices or with ``compile``, torch. Asking for a runtime where it cannot run is
    an error.
    """
    if requested not in RUNTIMES:
        raise ValueError(f"unknown runtime {requested!r}; one of {', '.join(RUNTIMES)}")
    if requested == "torch":
        return "torch"
    if requested == "bf16" or (requested == "auto" and device == "cpu" and not compile and trained_bf16):
        if compile:
            raise ValueError("compile runs fp32 torch: choose runtime='torch' to compile")
        if device != "cpu":
            if requested == "bf16":
                raise ValueError(f"the bf16 runtime runs on the CPU, not on {device}")
        else:
            if bf16_supported is None:
                bf16_supported = cpu_bf16_supported()
            if bf16_supported:
                return "bf16"
            if requested == "bf16":
                raise ValueError("this CPU has no native bf16 (AVX512-BF16 or AMX): choose another runtime")
    if onnxruntime_available is None:
        onnxruntime_available = _onnxruntime_available()
    if requested == "onnxruntime":
        if device != "cpu":
            raise ValueError(f"ONNX Runtime runs the networks on the CPU here, not on {device}: "
                             "choose device='cpu' or runtime='torch'")
        if compile:
            raise ValueError("compile is a torch option: choose runtime='torch' to compile")
        if not onnxruntime_available:
            raise ValueError("ONNX Runtime is not installed (pip install onnxruntime onnx)")
        return "onnxruntime"
    return "onnxruntime" if device == "cpu" and not compile and onnxruntime_available else "torch"


class _OnnxModule:
    """An ONNX Runtime session that is called like the torch network: ``(x, dose) -> y``.

    The session runs each slice on one thread, and ``workers`` slices of a batch run side by side
    (the session is thread-safe): on 2 cores the default U-Net went from 1.16 to 1.69 times torch's
    eager speed (``docs/BENCHMARKS.md``), because these small convolutions split poorly across
    threads. Each slice is computed the same way whatever the batch, so results do not depend on
    the batch size.
    """

    def __init__(self, session, workers: int):
        from concurrent.futures import ThreadPoolExecutor

        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="jointrecon-onnx") if self.workers > 1 else None

    def to(self, device):
        return self

    def close(self) -> None:
        """Let the worker threads go (a replaced or dropped session)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __call__(self, x, dose):
        import torch

        xs = np.ascontiguousarray(x.detach().cpu().numpy())
        ds = dose.detach().cpu().numpy().astype(np.float32)

        def one(i):
            feed = {"x": xs[i:i + 1]}
            if "dose" in self.inputs:
                feed["dose"] = ds[i:i + 1]
            return self.session.run(None, feed)[0]

        if self._pool is None or len(xs) == 1:
            outs = [one(i) for i in range(len(xs))]
        else:
            outs = list(self._pool.map(one, range(len(xs))))
        return torch.from_numpy(np.concatenate(outs))


# ONNX Runtime sessions of this process, by (model, threads) -> (weights' sha256, module)
_ONNX: dict[tuple[str, int], tuple[str, _OnnxModule]] = {}
# exports that failed or did not match torch, by (model, weights' sha256) -> why: not retried
_ONNX_FAILED: dict[tuple[str, str], str] = {}
_ONNX_LOCK = threading.Lock()
#: The largest difference from torch (HU) an exported network may show before it is used.
ONNX_TOLERANCE_HU = 0.01


def onnx_model(name: str, net) -> _OnnxModule:
    """The network exported to ONNX and loaded in ONNX Runtime, once per process, model, weights.

    The export is checked against torch on a test image first; a network that differs by more
    than :data:`ONNX_TOLERANCE_HU` raises (the caller then runs it in torch).
    """
    import torch

    from .models.registry import read_card

    digest = (read_card(name) or {}).get("sha256", "")
    threads = torch.get_num_threads()
    with _ONNX_LOCK:
        cached = _ONNX.get((name, threads))
        if cached is not None and cached[0] == digest:
            return cached[1]
        if (name, digest) in _ONNX_FAILED:
            raise RuntimeError(f"{_ONNX_FAILED[(name, digest)]} (earlier in this session)")
        if cached is not None:  # older weights of the model
            _ONNX.pop((name, threads))[1].close()
        try:
            module = _export(name, net, threads)
        except Exception as exc:
            _ONNX_FAILED[(name, digest)] = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise
        _ONNX[(name, threads)] = (digest, module)
    return module


def _export(name: str, net, threads: int) -> _OnnxModule:
    """Export, load and check one network (see :func:`onnx_model`)."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    from .models.blocks import hu_to_model, model_to_hu

    net = net.to("cpu").eval()
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(96.0), indexing="ij")
    hu = torch.where((yy - 32) ** 2 + (xx - 48) ** 2 < 600, 40.0, -1000.0) + 30 * torch.randn(64, 96, generator=g)
    x = hu_to_model(hu)[None, None].float()
    dose = torch.full((1,), 0.25)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x, dose), buf, input_names=["x", "dose"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}, "dose": {0: "batch"},
                                        "y": {0: "batch", 2: "height", 3: "width"}},
                          dynamo=False, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one thread per slice; ``threads`` slices side by side
    options.inter_op_num_threads = 1
    module = _OnnxModule(ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"]),
                         workers=threads)
    with torch.inference_mode():
        diff = float((model_to_hu(module(x, dose)) - model_to_hu(net(x, dose))).abs().max())
    if not diff <= ONNX_TOLERANCE_HU:
        module.close()
        raise RuntimeError(f"the ONNX export of {name} differs from torch by {diff:.3g} HU")
    return module


class _Bf16Module:
    """The torch network run with bf16 autocast on channels-last input, as it was trained; returns
    fp32. Each call is one batch of slices."""

    workers = 2  # slices per batch: the fastest of 1, 2, 4 and 8 in a timing on 2 cores

    def __init__(self, net):
        import torch

        self.net = net.to(memory_format=torch.channels_last)

    def to(self, device):
        return self

    def __call__(self, x, dose):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x.contiguous(memory_format=torch.channels_last), dose).float()


def _run_torch_batch(model, slices: np.ndarray, dose: float, device: str) -> np.ndarray:
    import torch

    from .models.blocks import SIZE_MULTIPLE, hu_to_model, model_to_hu, pad_to_multiple

    with torch.inference_mode():
        x = hu_to_model(torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None])
        x, (h, w) = pad_to_multiple(x, SIZE_MULTIPLE)
        x = x.to(device)
        d = torch.full((x.shape[0],), float(dose), device=device)
        y = model.to(device)(x, d)
        return model_to_hu(y[:, 0, :h, :w]).float().cpu().numpy()


def iter_denoise(
    ct_or_hu,
    *,
    model: str = DEFAULT_MODEL,
    dose: float | str | None = "estimate",
    device: str = "auto",
    batch_size: int | None = None,
    compile: bool = False,
    runtime: str = "auto",
) -> Generator[Progress, None, CTVolume | np.ndarray]:
    """Denoise slice batches, yielding :class:`Progress` after each; returns the result.

    Parameters are those of :func:`denoise`. Close the generator (or stop iterating) to cancel.
    """
    from .models.registry import get_spec, load_model

    if is_diffusion(model):  # the mean of the card's number of posterior samples (one by default)
        result = yield from iter_denoise_with_uncertainty(ct_or_hu, model=model, dose=dose, samples=None,
                                                          device=device, runtime=runtime)
        return result.mean
    is_volume = isinstance(ct_or_hu, CTVolume)
    hu = ct_or_hu.hu if is_volume else np.asarray(ct_or_hu)
    dose = float(dose) if isinstance(dose, (int, float, np.floating)) else dose
    _validate_input(hu, dose)
    spec = get_spec(model)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
    stack = hu[None] if hu.ndim == 2 else hu
    cond = conditioning_for(model, stack, dose)
    value = cond.value
    out = np.empty(stack.shape, dtype=np.float32)
    total = stack.shape[0]
    notes: list[str] = []
    used = "torch"
    if spec.kind == "classical":
        dev = "cpu"
        for k in range(total):
            out[k] = spec.run(np.asarray(stack[k], dtype=np.float32), value)
            yield Progress(k + 1, total, dev, runtime="classical", conditioning=cond)
    else:
        import torch

        # ONNX Runtime asked for by name runs on the CPU, whatever GPU "auto" would find
        dev = "cpu" if runtime == "onnxruntime" and device == "auto" else select_device(device)
        net = load_model(model)

        def fast(dev):
            """The network for ``dev`` in the chosen runtime, and that runtime's name."""
            chosen = select_runtime(runtime, dev, compile=compile, trained_bf16=trained_bf16(model))
            if chosen == "bf16":
                return _Bf16Module(net), "bf16"
            if chosen == "onnxruntime":
                try:
                    return onnx_model(model, net), "onnxruntime"
                except Exception as exc:  # an export or a runtime that does not work here
                    if runtime == "onnxruntime":
                        raise
                    notes.append(f"ONNX Runtime failed ({type(exc).__name__}: {str(exc)[:200]}); ran in torch")
                    return net, "torch"
            return (compiled_model(model, net, dev), "torch.compile") if compile else (net, "torch")

        run, used = fast(dev)
        if notes:  # the export fell back to torch: say so now, not only in a volume's notes
            yield Progress(0, total, dev, notes[-1], used, cond)
        if batch_size is None:
            # ONNX Runtime: one slice per thread, side by side; torch on the CPU: one 512^2 slice at
            # a time is fastest (cache); GPUs batch
            batch_size = run.workers if used in ("onnxruntime", "bf16") else 1 if dev == "cpu" else 4
        torch.manual_seed(0)
        k = 0
        while k < total:
            chunk = stack[k:k + batch_size]
            try:
                out[k:k + len(chunk)] = _run_torch_batch(run, chunk, value, dev)
            except Exception as exc:
                if run is not net and not _is_oom(exc) and runtime not in ("onnxruntime", "bf16"):
                    # no C++ compiler, an unsupported backend...: the eager network gives the same result
                    if used == "torch.compile":
                        with _COMPILED_LOCK:
                            _COMPILED.pop((model, dev), None)
                    elif used == "onnxruntime":
                        with _ONNX_LOCK:
                            dropped = _ONNX.pop((model, torch.get_num_threads()), None)
                        if dropped is not None:
                            dropped[1].close()
                    name = {"torch.compile": "torch.compile", "bf16": "bf16 autocast"}.get(used, "ONNX Runtime")
                    notes.append(f"{name} failed "
                                 f"({type(exc).__name__}: {str(exc)[:200]}); ran without it")
                    run, used = net, "torch"
                    yield Progress(k, total, dev, notes[-1], used, cond)
                    continue
                if not isinstance(exc, RuntimeError) or dev == "cpu" or not _is_oom(exc):
                    raise
                if dev == "cuda":
                    torch.cuda.empty_cache()
                notes.append(f"{dev} ran out of memory; continued on the CPU")
                seen = len(notes) - 1
                dev = "cpu"
                run, used = fast(dev)
                yield Progress(k, total, dev, "; ".join(notes[seen:]), used, cond)
                continue
            k += len(chunk)
            yield Progress(k, total, dev, runtime=used, conditioning=cond)
        net.to("cpu")
    result = out[0] if hu.ndim == 2 else out
    if is_volume:
        note = f"denoised with {model} ({cond.describe()}) on {dev}" + (
            f" ({ {'onnxruntime': 'ONNX Runtime', 'bf16': 'bf16 autocast'}.get(used, used)})" if used != "torch" else "")
        return ct_or_hu.with_hu(result, notes=notes + [note],
                                series_description=f"{ct_or_hu.series_description} {model} {cond.label()}".strip())
    return result


def denoise(
    ct_or_hu,
    *,
    model: str = DEFAULT_MODEL,
    dose: float | str | None = "estimate",
    device: str = "auto",
    progress: Callable[[Progress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    batch_size: int | None = None,
    compile: bool = False,
    runtime: str = "auto",
):
    """Denoise a 2D slice or a 3D volume in HU with a registered model.

    Parameters
    ----------
    ct_or_hu : CTVolume or numpy.ndarray
        A CT volume, or a 2D ``(y, x)`` / 3D ``(z, y, x)`` array in HU, any size.
    model : str
        A name from :func:`napari_jointrecon.list_models` (default: the registry's
        ``DEFAULT_MODEL``, ``"unet"``).
    dose : float or "estimate"
        The dose fraction the scan was taken at (0.25 for 25 %), or ``"estimate"`` (None too) to let
        the image's own noise decide (:func:`conditioning_for` says what each kind of model makes
        of it; ``Progress.conditioning`` and a volume's notes say what was used).
    device : {"auto", "cuda", "mps", "cpu"}
        ``auto`` takes CUDA, then MPS, then the CPU. A GPU that runs out of memory falls back to
        the CPU (the result's notes say so).
    progress : callable, optional
        Called with a :class:`Progress` after every batch.
    cancel : callable, optional
        Polled between batches; when it returns True, :class:`Cancelled` is raised.
    batch_size : int, optional
        Slices per batch (progress and cancellation come between batches); by default one per
        thread with ONNX Runtime (they run side by side), 1 with torch on the CPU, 4 on a GPU.
    compile : bool
        Run the network through ``torch.compile`` (fp32, same results within 1e-3 HU). The first run
        of a model in a process compiles it (seconds; more for a new image size); later runs in
        the same process are faster (on 2 CPU cores the default U-Net went from 6-7 to 11 slices/s:
        ``docs/BENCHMARKS.md``). Falls back to the plain network, with a note, when compiling
        fails. Runs in torch (not ONNX Runtime).
    runtime : {"auto", "torch", "onnxruntime"}
        ``auto``: ONNX Runtime on the CPU (the exported network, checked against torch to
        0.01 HU; faster), torch on a GPU or with ``compile``. A failing export or runtime falls
        back to torch with a note, unless ``onnxruntime`` was asked for explicitly.

    Returns
    -------
    Same type and shape as the input, float32 HU (a CTVolume keeps its geometry).

    Raises
    ------
    ValueError
        For NaN/Inf voxels, arrays that are not 2D/3D, slices under 8 x 8, a dose outside (0, 1].
    KeyError
        For an unknown model.
    Cancelled
        When ``cancel()`` returned True.
    """
    gen = iter_denoise(ct_or_hu, model=model, dose=dose, device=device, batch_size=batch_size,
                       compile=compile, runtime=runtime)
    return _drive(gen, progress, cancel)


def _drive(gen, progress, cancel):
    """Run a progress generator to its end: ``progress`` after each step, ``cancel`` polled before
    each (True: the generator is closed and :class:`Cancelled` raised); returns its value."""
    try:
        while True:
            if cancel is not None and cancel():
                gen.close()
                raise Cancelled("denoising was cancelled")
            step = next(gen)
            if progress is not None:
                progress(step)
    except StopIteration as stop:
        return stop.value


# diffusion models: posterior samples and their spread ---------------------------------------------

def is_diffusion(model: str) -> bool:
    """Whether a registered model draws posterior samples (a diffusion model)."""
    from .models.registry import get_spec

    return get_spec(model).recipe == "diffusion"


class Uncertainty(NamedTuple):
    """The mean of posterior samples and their per-voxel standard deviation, both in HU and of the
    input's type and shape (a CTVolume keeps its geometry)."""

    mean: object
    sd: object
    samples: int
    conditioning: Conditioning | None = None


def expected_seconds(shape, *, model: str = "diffusion", samples: int | None = None, device: str = "cpu",
                     steps: int | None = None, t_start: int | None = None) -> float:
    """Expected seconds of a diffusion run on an image of ``shape`` (2D or 3D): patches x steps x
    samples at the card's measured seconds per 64^3 network call (2 CPU threads), or the
    development machine's figure; a GPU is taken as 20x faster. No torch needed."""
    from .models.diffusion_plan import expected_seconds as plan
    from .models.registry import read_card

    return plan(shape, read_card(model), samples=samples, device=device, steps=steps, t_start=t_start)


def iter_denoise_with_uncertainty(
    ct_or_hu,
    *,
    model: str = "diffusion",
    dose: float | str | None = "estimate",
    samples: int | None = 8,
    seed: int = 0,
    steps: int | None = None,
    t_start: int | None = None,
    eta: float | None = None,
    device: str = "auto",
    runtime: str = "auto",
    noise_reference=None,
) -> Generator[Progress, None, Uncertainty]:
    """Draw posterior samples patch by patch, yielding :class:`Progress` after every network call
    (``unit="steps"``); returns an :class:`Uncertainty`. Parameters are those of
    :func:`denoise_with_uncertainty` (``samples=None``: the card's ``denoise_samples``). Close the
    generator to cancel."""
    from .models.diffusion import SamplerSettings, iter_sample_volume
    from .models.registry import get_spec, load_model, read_card

    is_volume = isinstance(ct_or_hu, CTVolume)
    hu = ct_or_hu.hu if is_volume else np.asarray(ct_or_hu)
    dose = float(dose) if isinstance(dose, (int, float, np.floating)) else dose
    _validate_input(hu, dose)
    spec = get_spec(model)
    if spec.recipe != "diffusion":
        raise ValueError(f"{model} gives one answer, not posterior samples: the uncertainty comes from a diffusion "
                         f"model ({', '.join(n for n in _diffusion_names()) or 'none has shipped weights yet'})")
    if runtime not in ("auto", "torch", "bf16"):
        raise ValueError(f"a diffusion model runs in torch: runtime 'auto', 'torch' or 'bf16', not {runtime!r}")
    card = read_card(model) or {}
    settings = SamplerSettings.from_card(card, steps=steps, t_start=t_start, eta=eta)
    n = settings.denoise_samples if samples is None else int(samples)
    if n < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    # a 2D slice is a volume one slice thick (the network has trained on thin slabs)
    stack = np.asarray(hu, dtype=np.float32)[None] if hu.ndim == 2 else np.asarray(hu, dtype=np.float32)
    reference = stack if noise_reference is None else np.asarray(noise_reference, dtype=np.float32)
    cond = conditioning_for(model, reference, dose)
    dev = select_device(device)
    used = select_runtime(runtime, dev, onnxruntime_available=False, trained_bf16=trained_bf16(model))
    net = load_model(model)
    gen = iter_sample_volume(net, stack, cond.value, samples=n, seed=seed, settings=settings, device=dev,
                             autocast=used == "bf16")
    try:
        while True:
            p = next(gen)
            yield Progress(p.done, p.total, dev, runtime=used, conditioning=cond, unit="steps", detail=p.describe())
    except StopIteration as stop:
        mean, sd = stop.value
    finally:
        gen.close()
        net.to("cpu")
    if hu.ndim == 2:
        mean, sd = mean[0], sd[0]
    if is_volume:
        what = f"{model} ({cond.describe()}) on {dev}, {n} sample(s), seed {seed}, {settings.steps} DDIM steps from t={settings.t_start}"
        label = f"{ct_or_hu.series_description} {model} {cond.label()}".strip()
        mean = ct_or_hu.with_hu(mean, notes=[f"mean of posterior samples of {what}"], series_description=label)
        sd = ct_or_hu.with_hu(sd, notes=[f"per-voxel standard deviation of posterior samples of {what}"],
                              series_description=f"{label} SD")
    return Uncertainty(mean, sd, n, cond)


def _diffusion_names() -> list[str]:
    from .models.registry import list_models

    return [c["name"] for c in list_models() if is_diffusion(c["name"])]


def denoise_with_uncertainty(
    ct_or_hu,
    *,
    model: str = "diffusion",
    dose: float | str | None = "estimate",
    samples: int = 8,
    seed: int = 0,
    steps: int | None = None,
    t_start: int | None = None,
    eta: float | None = None,
    device: str = "auto",
    runtime: str = "auto",
    noise_reference=None,
    progress: Callable[[Progress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Uncertainty:
    """Denoise with a diffusion model: the mean of ``samples`` posterior samples and their per-voxel
    standard deviation.

    Parameters
    ----------
    ct_or_hu : CTVolume or numpy.ndarray
        A 2D slice (denoised as a volume one slice thick) or a 3D ``(z, y, x)`` volume in HU.
    model : str
        A diffusion model of the registry (``"diffusion"``).
    dose : float or "estimate"
        As in :func:`denoise` (the model is conditioned on the noise level to remove).
    samples : int
        Posterior samples (each costs a full sampling run).
    seed : int
        The same seed, input and settings give the same result.
    steps, t_start, eta : optional
        DDIM steps, the start and DDIM's stochasticity (default: the card's ``sampling``).
    device : {"auto", "cuda", "mps", "cpu"}
    runtime : {"auto", "torch", "bf16"}
        ``auto``: bf16 autocast on a CPU with native bf16 when the model was trained so, else fp32.
    noise_reference : numpy.ndarray, optional
        Where to measure the noise (HU, 2D or 3D) instead of the input: the whole slices around a
        small box, which may hold too little flat soft tissue to measure.
    progress : callable, optional
        Called with a :class:`Progress` after every network call (``unit="steps"``, ``detail`` says
        which patch, sample and step).
    cancel : callable, optional
        Polled after every network call (well under a second apart on 2 CPU cores for a 64^3
        patch); when it returns True, :class:`Cancelled` is raised.

    Returns
    -------
    Uncertainty
        ``(mean, sd, samples, conditioning)``; ``mean`` and ``sd`` in HU, of the input's type and
        shape (``sd`` >= 0; 0 everywhere for one sample).

    Raises
    ------
    ValueError
        For a model that is not a diffusion model, bad input (see :func:`denoise`), ``samples < 1``.
    Cancelled
        When ``cancel()`` returned True.
    """
    gen = iter_denoise_with_uncertainty(ct_or_hu, model=model, dose=dose, samples=samples, seed=seed, steps=steps,
                                        t_start=t_start, eta=eta, device=device, runtime=runtime,
                                        noise_reference=noise_reference)
    return _drive(gen, progress, cancel)
