"""Conditional diffusion denoiser (the DDPM enhancement design, ``../shared/seeds/003_*``), sized for the CPU.

The parts of the design, and what was changed to make them usable on two CPU cores:

* **Network**: a 3D U-Net with GroupNorm, SiLU, a sinusoidal time embedding and one self-attention
  block at the lowest resolution predicts the noise ``epsilon`` of the diffused sample ``x_t`` from
  ``[x_t, low-dose image]`` (two input channels), ``t`` and the noise level to remove (HU / 1000,
  the zoo's conditioning: :func:`napari_jointrecon.inference.conditioning_for`), so that it works on
  real scans of unknown dose. The design's channels (64-512) would take minutes per patch here:
  the volume is folded 2x2 in-plane first (as the 2D U-Net does), and the three levels have
  ``width``, ``2 width`` and ``4 width`` channels (16/32/64 by default). Down-sampling is in-plane
  only, so that any depth works (a 2D slice is a volume one slice thick) and the training patches,
  which are only a few slices deep, see the same network as 64-slice inference patches. The
  attention is in-plane (per slice of the lowest level), so its token count does not depend on the
  patch depth either.
* **Schedule and objective**: T = 1000, linear betas 1e-4 .. 0.02, the epsilon objective; kept.
* **Sampler**: DDIM. Instead of 50 steps from pure noise at t = T, sampling starts from the
  low-dose image diffused to ``t_start`` (100 by default: a noise SD of 0.3 on the HU / 1000 scale,
  300 HU, several times the noise of a 10 % dose scan) and takes ``steps`` DDIM steps (10) down to
  t = 0 (CoreDiff-style: the low-dose image is already close to the answer, so few steps suffice).
  Training draws t in 1 .. ``T_TRAIN_MAX`` (250), the only part of the chain sampling visits.
  Posterior samples differ in the noise that starts them (and, with ``eta > 0``, in the noise of
  every step); the same seed gives the same sample.
* **Patches**: 64^3 by default (clipped to the volume), overlapping by 16 voxels and joined with a
  Gaussian window (sigma 1/8 of the patch side, as nnU-Net does). Every patch and sample has its
  own seeded noise, so the result does not depend on the order of work (or on a cancelled run before).

The layout of a run (sampler settings, timesteps, patches, weights, the expected time) is in
:mod:`napari_jointrecon.models.diffusion_plan`, which needs no torch.

Intensities: the network works on ``x = HU / 1000`` (``2 * hu_to_model(hu) - 1``, not clipped), so
air is -1 and water 0, the range DDPM's schedule was made for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import hu_to_model
from .diffusion_plan import (BATCH_BYTES, BATCH_VOXELS, DEFAULT_SAMPLER, SECONDS_PER_EVAL_64, SIZE_MULTIPLE,
                             T_TRAIN_MAX, SamplerSettings, ddim_timesteps, estimate_seconds, gaussian_window,
                             patch_grid)

__all__ = ["DiffusionUNet3D", "Schedule", "SamplerSettings", "DEFAULT_SAMPLER", "T_TRAIN_MAX", "to_diffusion",
           "from_diffusion", "ddim_timesteps", "iter_ddim", "patch_grid", "gaussian_window", "iter_sample_volume",
           "sample_batch", "VolumeProgress", "SIZE_MULTIPLE", "estimate_seconds", "SECONDS_PER_EVAL_64"]


def to_diffusion(hu: torch.Tensor) -> torch.Tensor:
    """HU -> the diffusion scale ``HU / 1000`` (air -1, water 0), via the models' scale."""
    return 2.0 * hu_to_model(hu) - 1.0


def from_diffusion(x: torch.Tensor) -> torch.Tensor:
    return x * 1000.0


class Schedule:
    """DDPM's linear beta schedule: ``T`` steps from ``beta_start`` to ``beta_end``."""

    def __init__(self, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        self.T = T
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        #: alpha-bar at t = 0 .. T-1 (index t is the t-th noising step, as in DDPM's 1..T)
        self.alpha_bar = torch.cumprod(1.0 - betas, 0).float()

    def ab(self, t: int | torch.Tensor) -> torch.Tensor:
        """alpha-bar at ``t`` (t = -1: 1, the clean image)."""
        if isinstance(t, int):
            return torch.tensor(1.0) if t < 0 else self.alpha_bar[t]
        return torch.where(t < 0, torch.ones((), dtype=torch.float32), self.alpha_bar[t.clamp(min=0)])

    def diffuse(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise`` for a batch of ``t``."""
        ab = self.ab(t).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


# network -------------------------------------------------------------------------------------------

def _fold(x: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, 4C, D, H/2, W/2): 2x2 in-plane pixel unshuffle."""
    b, c, d, h, w = x.shape
    x = x.view(b, c, d, h // 2, 2, w // 2, 2).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * 4, d, h // 2, w // 2)


def _unfold(x: torch.Tensor) -> torch.Tensor:
    b, c4, d, h, w = x.shape
    c = c4 // 4
    x = x.view(b, c, 2, 2, d, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c, d, h * 2, w * 2)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the (float) timesteps ``t`` (B,), as in DDPM / the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 4), c)


class ResBlock3D(nn.Module):
    """GroupNorm -> SiLU -> conv 3^3, the embedding's scale and shift, GroupNorm -> SiLU -> conv 3^3,
    plus the (1x1-projected) input."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv3d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class InPlaneAttention(nn.Module):
    """Multi-head self-attention over the in-plane positions of each slice (a residual block)."""

    def __init__(self, c: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 4, 1).reshape(b * d, h * w, c)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.reshape(b, d, h, w, c).permute(0, 4, 1, 2, 3)


class DiffusionUNet3D(nn.Module):
    """Noise predictor ``eps(x_t, low, t, level)`` on ``(B, 1, D, H, W)`` volumes in the diffusion
    scale; ``H`` and ``W`` multiples of :data:`SIZE_MULTIPLE`, any depth ``D``.

    Parameters
    ----------
    width : int
        Channels of the first level (then 2x and 4x).
    emb : int
        Size of the time + noise-level embedding.
    """

    conditioning = "noise"

    def __init__(self, width: int = 16, emb: int = 64):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.level_mlp = nn.Sequential(nn.Linear(1, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.emb_dim = emb
        self.head = nn.Conv3d(2 * 4, w1, 3, padding=1)
        self.enc1 = ResBlock3D(w1, w1, emb)
        self.down1 = nn.Conv3d(w1, w2, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.enc2 = ResBlock3D(w2, w2, emb)
        self.down2 = nn.Conv3d(w2, w3, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.mid1 = ResBlock3D(w3, w3, emb)
        self.attn = InPlaneAttention(w3)
        self.mid2 = ResBlock3D(w3, w3, emb)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"), nn.Conv3d(w3, w2, 1))
        self.dec2 = ResBlock3D(2 * w2, w2, emb)
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"), nn.Conv3d(w2, w1, 1))
        self.dec1 = ResBlock3D(2 * w1, w1, emb)
        self.out_norm = _norm(w1)
        self.tail = nn.Conv3d(w1, 4, 3, padding=1)

    def embed(self, t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        # log of the level in HU: 1 HU and 300 HU are as far apart as the noise variance says
        lv = torch.log(level.float().clamp(min=1e-4) * 1000.0).reshape(-1, 1)
        return self.time_mlp(timestep_embedding(t, self.emb_dim)) + self.level_mlp(lv)

    def forward(self, x_t: torch.Tensor, low: torch.Tensor, t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        e = F.silu(self.embed(t.to(x_t.device), level.to(x_t.device)))
        h1 = self.enc1(self.head(_fold(torch.cat([x_t, low], dim=1))), e)
        h2 = self.enc2(self.down1(h1), e)
        m = self.mid2(self.attn(self.mid1(self.down2(h2), e)), e)
        d2 = self.dec2(torch.cat([self.up2(m), h2], dim=1), e)
        d1 = self.dec1(torch.cat([self.up1(d2), h1], dim=1), e)
        return _unfold(self.tail(F.silu(self.out_norm(d1))))


# sampling ------------------------------------------------------------------------------------------

def iter_ddim(net: nn.Module, low: torch.Tensor, level: torch.Tensor, *, schedule: Schedule, steps: int,
              t_start: int, eta: float, noises: Callable[[int], torch.Tensor],
              autocast: bool = False) -> Generator[int, None, torch.Tensor]:
    """DDIM from the low-dose image diffused to ``t_start`` down to t = 0, one network call a step.

    ``low`` ``(B, 1, D, H, W)`` in the diffusion scale; ``noises(i)`` gives the Gaussian noise of
    call ``i`` (0: the start, 1..: the steps' noise when ``eta > 0``), shaped like ``low``, so that
    a seeded caller gets the same sample on any device. ``autocast``: the network in bf16 on the
    CPU (as it was trained); the update stays in fp32. Yields the number of steps done; returns the
    sample ``x_0``.
    """
    ts = ddim_timesteps(t_start, steps)
    # inference mode per step, never across a yield (the caller's code runs between the steps)
    with torch.inference_mode():
        x = schedule.diffuse(low, torch.full((low.shape[0],), ts[0], dtype=torch.long), noises(0))
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        with torch.inference_mode():
            ab, ab_prev = schedule.ab(t).to(low.device), schedule.ab(prev).to(low.device)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                eps = net(x, low, torch.full((low.shape[0],), float(t), device=low.device), level).float()
            # the predicted clean image; clamped to the HU range a scanner stores (-1024 .. 3071)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1.024, 3.071)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp(min=0).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
            if eta > 0 and prev >= 0:
                x = x + sigma * noises(i + 1)
        yield i + 1
    return x


@dataclass(frozen=True)
class VolumeProgress:
    """Where :func:`iter_sample_volume` is: network calls done of ``total``; the call drew samples
    ``first_sample`` to ``sample`` (counted from 1) side by side."""

    done: int
    total: int
    patch: int
    patches: int
    sample: int
    samples: int
    step: int
    steps: int
    first_sample: int = 0

    def describe(self) -> str:
        which = (f"samples {self.first_sample}-{self.sample}" if 0 < self.first_sample < self.sample
                 else f"sample {self.sample}")
        return f"patch {self.patch}/{self.patches}, {which}/{self.samples}, step {self.step}/{self.steps}"


def _seeded_normal(shape, seed: int, patch: int, sample: int, call: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, patch, sample, call]).generate_state(1)[0]))
    return torch.randn(shape, generator=g)


def sample_batch(patch: tuple[int, ...], samples: int, volume_bytes: int) -> int:
    """How many samples share one network call: up to :data:`BATCH_VOXELS` voxels a call (thin
    patches, a slab or a slice, are batched; 64^3 patches go one sample at a time), and their
    blended volumes within :data:`BATCH_BYTES`."""
    by_voxels = BATCH_VOXELS // max(int(np.prod(patch)), 1)
    by_memory = BATCH_BYTES // max(int(volume_bytes), 1)
    return max(1, min(int(samples), by_voxels, by_memory))


def iter_sample_volume(net: nn.Module, hu: np.ndarray, level: float, *, samples: int, seed: int,
                       settings: SamplerSettings = DEFAULT_SAMPLER, device: str = "cpu",
                       schedule: Schedule | None = None, autocast: bool = False,
                       ) -> Generator[VolumeProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Posterior samples of a ``(D, H, W)`` HU volume, patch by patch; yields after every network
    call, returns ``(mean, sd)`` in HU (float32, the input's shape; ``sd`` is the samples' standard
    deviation with ``ddof=1`` times ``settings.sd_scale``, 0 for one sample).

    Each sample is a whole volume (its patches joined with Gaussian weights); mean and SD are
    accumulated over the samples (Welford). Samples of thin patches share a network call
    (:func:`sample_batch`); each sample draws its own seeded noise, so a seed gives the same
    samples whatever the batching. Patches run one at a time: progress and cancellation come after
    every network call. ``autocast``: bf16 on the CPU (:func:`iter_ddim`).
    """
    schedule = schedule or Schedule()
    vol = np.asarray(hu, dtype=np.float32)
    d, h, w = vol.shape
    # in-plane padding to the network's multiple (reflect where the image allows it)
    ph, pw = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
        vol = np.pad(vol, ((0, 0), (0, ph), (0, pw)), mode=mode)
    shape = vol.shape
    p = settings.patch
    patch = (min(p, shape[0]), max(SIZE_MULTIPLE, min(p, shape[1]) // SIZE_MULTIPLE * SIZE_MULTIPLE),
             max(SIZE_MULTIPLE, min(p, shape[2]) // SIZE_MULTIPLE * SIZE_MULTIPLE))
    boxes = patch_grid(shape, patch, settings.overlap)
    windows = {}
    weight = np.zeros(shape, dtype=np.float32)
    for box in boxes:
        size = tuple(s.stop - s.start for s in box)
        windows.setdefault(size, gaussian_window(size))
        weight[box] += windows[size]
    steps = len(ddim_timesteps(settings.t_start, settings.steps))
    per_call = sample_batch(patch, samples, vol.nbytes)
    chunks = [list(range(first, min(first + per_call, samples))) for first in range(0, samples, per_call)]
    total = len(boxes) * len(chunks) * steps
    mean = np.zeros(shape, dtype=np.float32)
    m2 = np.zeros(shape, dtype=np.float32)
    done = 0
    lvl = torch.full((1,), float(level), device=device)
    net = net.to(device).eval()
    for chunk in chunks:
        blended = np.zeros((len(chunk), *shape), dtype=np.float32)
        for pi, box in enumerate(boxes):
            one = to_diffusion(torch.from_numpy(np.ascontiguousarray(vol[box])))[None, None]
            low = one.expand(len(chunk), *one.shape[1:]).contiguous().to(device)

            def noises(call, pi=pi, chunk=chunk, one=one):
                return torch.cat([_seeded_normal(one.shape, seed, pi, si, call) for si in chunk]).to(device)

            gen = iter_ddim(net, low, lvl.expand(len(chunk)), schedule=schedule, steps=settings.steps,
                            t_start=settings.t_start, eta=settings.eta, noises=noises,
                            autocast=autocast and device == "cpu")
            try:
                while True:
                    step = next(gen)
                    done += 1
                    yield VolumeProgress(done, total, pi + 1, len(boxes), chunk[-1] + 1, samples, step, steps,
                                         first_sample=chunk[0] + 1)
            except StopIteration as stop:
                out = from_diffusion(stop.value[:, 0]).float().cpu().numpy()
            finally:
                gen.close()
            blended[(slice(None), *box)] += windows[out.shape[1:]] * out
        blended /= weight
        for k, si in enumerate(chunk):
            delta = blended[k] - mean  # Welford over whole samples
            mean += delta / (si + 1)
            m2 += delta * (blended[k] - mean)
    sd = np.sqrt(m2 / (samples - 1)) * np.float32(settings.sd_scale) if samples > 1 else np.zeros_like(mean)
    return mean[:d, :h, :w].copy(), sd[:d, :h, :w].astype(np.float32)
