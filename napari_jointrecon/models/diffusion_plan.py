"""How a diffusion run is laid out: sampler settings, DDIM timesteps, patches and their weights, and the
expected time (numpy only: the Denoise widget states the time before a run, on napari's main thread,
without loading torch). The network and the sampler are in :mod:`napari_jointrecon.models.diffusion`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SIZE_MULTIPLE", "T_TRAIN_MAX", "SECONDS_PER_EVAL_64", "BATCH_VOXELS", "BATCH_BYTES", "SamplerSettings",
           "DEFAULT_SAMPLER", "ddim_timesteps", "patch_grid", "gaussian_window", "estimate_seconds", "expected_seconds"]

#: In-plane sizes are padded to a multiple of this (2x2 fold and two in-plane down-samplings).
SIZE_MULTIPLE = 8
#: Training draws t in 1 .. T_TRAIN_MAX: sampling starts at ``t_start`` <= this.
T_TRAIN_MAX = 250
#: Seconds of one network evaluation on a 64^3 patch on 2 CPU threads: ``benchmarks/bench_diffusion.py``
#: measured 0.22 (bf16 autocast) and 0.40 (fp32) on the development machine while other work kept
#: its load average near 4. The time estimate before a run uses the card's figure when
#: ``jointrecon evaluate`` has measured one.
SECONDS_PER_EVAL_64 = 0.3
#: Samples share a network call up to this many voxels a call (samples of thin patches, a slab or a
#: slice, go side by side; a 64^3 patch fills a call alone) ...
BATCH_VOXELS = 64 ** 3
#: ... and up to this many bytes of their blended volumes.
BATCH_BYTES = 512 << 20


@dataclass(frozen=True)
class SamplerSettings:
    """How samples are drawn (the card's ``sampling`` overrides these defaults).

    Attributes
    ----------
    steps : int
        DDIM steps from ``t_start`` to 0 (network evaluations per sample and patch).
    t_start : int
        Where sampling starts: the low-dose image diffused to this t.
    eta : float
        DDIM's stochasticity (0: deterministic given the starting noise; 1: DDPM-like).
    denoise_samples : int
        Samples averaged by :func:`napari_jointrecon.denoise` (``denoise_with_uncertainty`` takes
        its own ``samples``). One sample carries sampling noise of its own, which the mean of 4
        averages away (a slice's or slab's samples share network calls; a volume's take 4x one
        sample's time).
    patch : int
        Side of the cubic patches (clipped to the volume).
    overlap : int
        Overlap of neighbouring patches (voxels).
    sd_scale : float
        The samples' standard deviation is multiplied by this to give the predicted uncertainty:
        fitted on the validation patients so that 68 % of the mean's errors lie within one
        predicted SD (``jointrecon tune-uncertainty``); 1 until fitted.
    """

    steps: int = 10
    t_start: int = 100
    eta: float = 0.0
    denoise_samples: int = 4
    patch: int = 64
    overlap: int = 16
    sd_scale: float = 1.0

    @classmethod
    def from_card(cls, card: dict | None, **overrides) -> SamplerSettings:
        known = {k: v for k, v in ((card or {}).get("sampling") or {}).items() if k in cls.__dataclass_fields__}
        known.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**known)
        if not (1 <= s.steps <= s.t_start <= T_TRAIN_MAX):
            raise ValueError(f"need 1 <= steps ({s.steps}) <= t_start ({s.t_start}) <= {T_TRAIN_MAX}")
        if s.eta < 0 or s.patch < SIZE_MULTIPLE or not (0 <= s.overlap < s.patch) or not s.sd_scale > 0:
            raise ValueError(f"bad sampler settings {s}")
        return s


DEFAULT_SAMPLER = SamplerSettings()


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """``steps`` decreasing timesteps from ``t_start`` (the first) down to above 0, evenly spaced."""
    ts = np.linspace(t_start, 0, steps, endpoint=False).round().astype(int)
    return sorted({int(t) for t in ts}, reverse=True)


def patch_grid(shape: tuple[int, ...], patch: tuple[int, ...], overlap: int) -> list[tuple[slice, ...]]:
    """Boxes of ``patch`` (per axis, each at most the shape) covering ``shape``, neighbours
    overlapping by at least ``overlap`` voxels; the last box of an axis ends at its edge."""
    axes = []
    for n, p in zip(shape, patch):
        p = min(p, n)
        if p >= n:
            axes.append([slice(0, n)])
            continue
        count = math.ceil((n - overlap) / max(p - overlap, 1))
        starts = np.linspace(0, n - p, max(count, 2)).round().astype(int)
        axes.append([slice(int(s), int(s) + p) for s in sorted(set(starts.tolist()))])
    return [tuple(box) for box in itertools.product(*axes)]


def gaussian_window(shape: tuple[int, ...], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Separable Gaussian weights, 1 at the centre, sigma ``sigma_scale`` x the side (floored so
    that the edges keep a small weight; a one-slice axis is flat)."""
    w = np.ones(shape, dtype=np.float32)
    for axis, n in enumerate(shape):
        if n == 1:
            continue
        c = (n - 1) / 2
        g = np.exp(-0.5 * ((np.arange(n) - c) / max(n * sigma_scale, 1e-3)) ** 2).astype(np.float32)
        g = np.maximum(g, 1e-3)
        w = w * g.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return w


def estimate_seconds(shape: tuple[int, ...], *, samples: int, settings: SamplerSettings = DEFAULT_SAMPLER,
                     seconds_per_eval_64: float = SECONDS_PER_EVAL_64) -> float:
    """Expected seconds of :func:`~napari_jointrecon.models.diffusion.iter_sample_volume` on ``shape`` (the patches' voxels x steps x
    samples, at a measured speed of one network evaluation on a 64^3 patch)."""
    shape = tuple(shape) if len(shape) == 3 else (1, *shape)
    p = settings.patch
    patch = tuple(min(p, n) for n in shape)
    boxes = patch_grid(shape, patch, settings.overlap)
    voxels = len(boxes) * float(np.prod(patch))
    steps = len(ddim_timesteps(settings.t_start, settings.steps))
    return voxels / 64 ** 3 * steps * samples * seconds_per_eval_64


def expected_seconds(shape, card: dict | None, *, samples: int | None = None, device: str = "cpu",
                     steps: int | None = None, t_start: int | None = None) -> float:
    """Expected seconds of a run of the model of ``card`` on an image of ``shape`` (2D or 3D): at the
    card's measured seconds per 64^3 network call (2 CPU threads; ``jointrecon evaluate``), else
    :data:`SECONDS_PER_EVAL_64`; a GPU is taken as 20x faster (a guess, said as such by callers)."""
    settings = SamplerSettings.from_card(card, steps=steps, t_start=t_start)
    per_eval = ((card or {}).get("speed") or {}).get("s_per_64cube_eval_2threads") or SECONDS_PER_EVAL_64
    n = settings.denoise_samples if samples is None else samples
    seconds = estimate_seconds(tuple(shape), samples=n, settings=settings, seconds_per_eval_64=per_eval)
    return seconds / 20.0 if device in ("cuda", "mps") else seconds
