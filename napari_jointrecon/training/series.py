"""Training data across patients and scanners, with each series' own noise level and texture.

Split by patient (``PATIENT_SPLIT``; whole series, never slices): training on seven patients of
four scanner makers' kernels, validation (model selection, early stopping, the tuning of the
classical filters and of the noise estimate's conditioning) on two, test on two more (one Siemens,
one GE) that nothing else ever sees.

Every real series is a full-dose scan that already carries its scanner's noise. Its noise level
``sd_full`` and texture (the NPS mean frequency) are measured on flat soft tissue
(:mod:`napari_jointrecon.noise`). The inserted noise is projection-domain quantum noise
(:func:`napari_jointrecon.dose.insertion_noise_basis`, whose variance follows the attenuation of each
ray), reconstructed with the series' own kernel (:func:`napari_jointrecon.noise.apply_texture`, the
cut-off fitted to the series' NPS) and scaled so that a dose fraction ``a`` has the noise
``sd_full / sqrt(a)``: the inserted part is ``sd_full * sqrt((1 - a) / a)``. Models conditioned on
noise learn to remove that inserted part given its level (the *conditioning*, in HU).

Augmentations are the physically right ones only: flips, 90-degree turns and the sign of the noise
(zero-mean Gaussian noise and its negative are equally likely); no intensity changes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..dose import DEFAULT_DOSE_MODEL, DOSE_LEVELS, _line_integrals, _mu, _normal, _projector, _to_hu
from ..io import load_ct
from ..noise import NPS_PATCH, apply_texture, flat_patches, nps_mean_frequency, patch_stack
from .data import PatchSampler, shared_data_dir

__all__ = ["PATIENT_SPLIT", "SeriesCache", "build_series_caches", "SeriesPatchSampler", "series_eval_set",
           "quantum_noise", "fit_texture"]

#: series (path under ../shared/data) -> (patient, split). The two Sensation 10 series are one scan.
PATIENT_SPLIT: dict[str, tuple[str, str]] = {
    "chest-ct-dicom": ("chest-ct-dicom", "train"),
    "torso-ct-nifti/example_ct.nii.gz": ("totalsegmentator-example", "train"),
    "torso-ct-nifti/aorta_crop_ct.nii.gz": ("totalsegmentator-aorta", "train"),
    "ct-series/philips-bigbore-B-abdomen": ("Pancreas-CT-CB_001", "train"),
    "ct-series/siemens-sensation10-B70f-chest": ("Lung_Dx-A0002", "train"),
    "ct-series/siemens-sensation10-B40f-chest": ("Lung_Dx-A0002", "train"),
    "ct-series/siemens-sensation16-B10f-chest": ("ACRIN-FLT-Breast_013", "train"),
    "ct-series/ge-lightspeedvct-LUNG-chest-abdomen": ("CMB-CRC-MSB-01068", "train"),
    "ct-series/ge-lightspeedvct-STANDARD-head": ("C3N-01192", "train"),
    "ct-series/siemens-B31f-chest": ("LungFCP-01-0001", "val"),
    "ct-series/ge-revolution-LUNG-abdomen": ("C3L-00189", "val"),
    "ct-series/siemens-biograph40-B30f-abdomen": ("TCGA-DE-A4MA", "test"),
    "ct-series/ge-lightspeedplus-STANDARD-chest": ("LIDC-IDRI-0001", "test"),
}
#: Training series use every ``TRAIN_STRIDE``-th slice (neighbouring slices repeat the anatomy);
#: validation and test use ``EVAL_SLICES`` slices spread over each series.
TRAIN_STRIDE = 2
EVAL_SLICES = 8
#: Texture cut-offs tried (cycles/pixel; None = the plain ramp filter, the sharpest).
CUTOFFS = (0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.23, 0.26, 0.30,
           0.35, 0.40, None)
#: Noise seed of the validation and test sets.
EVAL_SEED = 1234


def quantum_noise(hu: np.ndarray, pixel_mm: float, *, seed: int, first_index: int = 0) -> np.ndarray:
    """Ramp-filtered projection-domain quantum noise (HU) for slices ``(n, H, W)``: the first basis
    of :func:`~napari_jointrecon.dose.insertion_noise_basis`, without the electronic part."""
    model = DEFAULT_DOSE_MODEL
    proj = _projector(tuple(hu.shape[-2:]), model.n_views, "cpu")
    p = _line_integrals(_mu(hu, "cpu"), pixel_mm, model.n_views, "cpu")
    z = _normal(p.shape, seed, first_index, 0, "cpu")
    return _to_hu(proj.fbp(z * torch.sqrt(torch.exp(p) / model.i0)), pixel_mm)


def fit_texture(clean: np.ndarray, noise: np.ndarray) -> tuple[float | None, float, float, float]:
    """The cut-off whose textured noise matches the series' NPS, and the levels.

    Returns ``(cutoff, sd_full, scale, f_series)``: the noise of the series on its flat patches
    (HU), the factor that brings the textured noise to that level, and the series' NPS mean
    frequency. Measured on the same flat patches of the same slices for both.
    """
    picks = np.unique(np.linspace(0, clean.shape[0] - 1, min(8, clean.shape[0])).round().astype(int))
    big = {int(k): flat_patches(clean[k], NPS_PATCH, fraction=0.5) for k in picks}
    small = {int(k): flat_patches(clean[k]) for k in picks}
    big = {k: c for k, c in big.items() if c}
    small = {k: c for k, c in small.items() if c}
    if not big or not small:
        raise ValueError("no flat soft tissue to measure the series' noise")
    f_series = nps_mean_frequency(np.concatenate([patch_stack(clean[k], c, NPS_PATCH) for k, c in big.items()]))
    best = None
    for cutoff in CUTOFFS:
        tex = {k: apply_texture(noise[k], cutoff) for k in big}
        err = abs(nps_mean_frequency(np.concatenate([patch_stack(tex[k], c, NPS_PATCH) for k, c in big.items()]))
                  - f_series)
        if best is None or err < best[0]:
            best = (err, cutoff)
    cutoff = best[1]
    sd_full = float(np.median(np.concatenate([patch_stack(clean[k], c).std(axis=(1, 2)) for k, c in small.items()])))
    sd_tex = float(np.median(np.concatenate([patch_stack(apply_texture(noise[k], cutoff), c).std(axis=(1, 2))
                                             for k, c in small.items()])))
    return cutoff, sd_full, sd_full / sd_tex, f_series


@dataclass
class SeriesCache:
    """Full-dose slices of one series (HU) and their unit noise (textured, at the series' level)."""

    name: str
    split: str
    clean: np.ndarray        # (n, H, W) float32
    noise: np.ndarray        # (n, H, W) float16: textured noise with the series' full-dose level
    sd_full: float
    cutoff: float | None
    f_series: float
    slices: list[int]

    def low(self, k: int, dose: float, sl=np.s_[:, :], sign: float = 1.0) -> tuple[np.ndarray, float]:
        """A slice (or crop) at dose fraction ``dose`` and the inserted noise level (HU)."""
        factor = math.sqrt((1.0 - dose) / dose)
        return (self.clean[k][sl] + sign * factor * self.noise[k][sl].astype(np.float32),
                self.sd_full * factor)


def build_series_caches(cache_dir: str | Path, *, splits=("train", "val"), log=print,
                        seed: int = 0, stride: int | None = None) -> dict[str, SeriesCache]:
    """Load (or compute and store) the caches of every series of ``splits``.

    ``stride``: keep every ``stride``-th slice of every split (1: contiguous slices, for 3D models;
    stored under a name of its own), instead of ``TRAIN_STRIDE`` for training and ``EVAL_SLICES``
    spread slices for validation and test.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    caches = {}
    for rel, (_patient, split) in PATIENT_SPLIT.items():
        if split not in splits:
            continue
        name = rel.replace("/", "__").replace(".nii.gz", "")
        path = cache_dir / (f"series_{name}_{split}.npz" if stride is None else f"series_{name}_{split}_z{stride}.npz")
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                cutoff = float(z["cutoff"])
                caches[rel] = SeriesCache(rel, split, z["clean"], z["noise"], float(z["sd_full"]),
                                          None if cutoff < 0 else cutoff, float(z["f_series"]),
                                          z["slices"].tolist())
            continue
        t0 = time.perf_counter()
        vol = load_ct(shared_data_dir() / rel)
        hu = vol.hu
        if stride is not None:
            slices = list(range(0, hu.shape[0], stride))
        elif split == "train":
            slices = list(range(0, hu.shape[0], TRAIN_STRIDE))
        else:
            slices = np.unique(np.linspace(0, hu.shape[0] - 1, EVAL_SLICES).round().astype(int)).tolist()
        clean = np.ascontiguousarray(hu[slices], dtype=np.float32)
        pixel = float(math.sqrt(vol.spacing[1] * vol.spacing[2]))
        noise_seed = seed if split == "train" else EVAL_SEED
        raw = np.concatenate([quantum_noise(clean[k:k + 4], pixel, seed=noise_seed, first_index=int(k))
                              for k in range(0, clean.shape[0], 4)])
        cutoff, sd_full, scale, f_series = fit_texture(clean, raw)
        noise = (apply_texture(raw, cutoff) * scale).astype(np.float16)
        np.savez(path, clean=clean, noise=noise, sd_full=sd_full, cutoff=-1.0 if cutoff is None else cutoff,
                 f_series=f_series, slices=np.array(slices))
        caches[rel] = SeriesCache(rel, split, clean, noise, sd_full, cutoff, f_series, slices)
        log(f"series {rel} ({split}): {len(slices)} slices, full-dose noise {sd_full:.1f} HU, "
            f"NPS mean {f_series:.3f} cycles/px, cut-off {cutoff}, {time.perf_counter() - t0:.0f} s")
    return caches


def _to_model(a: list[np.ndarray]) -> torch.Tensor:
    return (torch.from_numpy(np.stack(a)[:, None].astype(np.float32)) + 1000.0) / 2000.0


class SeriesPatchSampler:
    """Random training patches ``(low, clean, level)``; ``level`` is the inserted noise in HU / 1000.

    Every series is drawn equally often (so that a long series does not crowd out the others'
    scanners), then a slice, a crop with at least 30 % tissue, a dose (10/25/50/70 %, or one time in
    five uniform in 5-100 %), a turn, a flip and the noise's sign.
    """

    def __init__(self, caches: dict[str, SeriesCache], *, patch: int = 128, seed: int = 0,
                 continuous_fraction: float = 0.2):
        self.sources = [c for c in caches.values() if c.split == "train"]
        if not self.sources:
            raise ValueError("no training series")
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.continuous_fraction = continuous_fraction

    #: the same dose draw as the chest recipe's sampler
    dose = PatchSampler.dose

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lows, cleans, levels = [], [], []
        for _ in range(batch):
            src = self.sources[int(self.rng.integers(len(self.sources)))]
            n, h, w = src.clean.shape
            ps = min(self.patch, h, w)
            for _try in range(10):
                k = int(self.rng.integers(n))
                y, x = int(self.rng.integers(h - ps + 1)), int(self.rng.integers(w - ps + 1))
                sl = np.s_[y:y + ps, x:x + ps]
                if (src.clean[k][sl] > -500).mean() > 0.3:
                    break
            dose = self.dose()
            sign = 1.0 if self.rng.integers(2) else -1.0
            low, level = src.low(k, dose, sl, sign)
            clean = src.clean[k][sl]
            turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            low, clean = np.rot90(low, turns), np.rot90(clean, turns)
            if flip:
                low, clean = low[:, ::-1], clean[:, ::-1]
            if ps < self.patch:
                pad = ((0, self.patch - ps), (0, self.patch - ps))
                low = np.pad(low, pad, constant_values=-1000.0)
                clean = np.pad(clean, pad, constant_values=-1000.0)
            lows.append(np.ascontiguousarray(low))
            cleans.append(np.ascontiguousarray(clean))
            levels.append(level / 1000.0)
        return _to_model(lows), _to_model(cleans), torch.tensor(levels, dtype=torch.float32)


def series_eval_set(caches: dict[str, SeriesCache], split: str = "val", crop: int | None = 320):
    """Fixed ``(low, clean, level, dose, series)`` batches of a split's series at the four doses
    (centre crops of ``crop`` pixels for speed during training; None for whole slices)."""
    items = []
    for c in caches.values():
        if c.split != split:
            continue
        n, h, w = c.clean.shape
        sl = np.s_[:, :] if crop is None else np.s_[(h - crop) // 2:(h + crop) // 2, (w - crop) // 2:(w + crop) // 2]
        for dose in DOSE_LEVELS:
            lows, levels = zip(*(c.low(k, dose, sl) for k in range(n)))
            items.append((_to_model(list(lows)), _to_model([c.clean[k][sl] for k in range(n)]),
                          levels[0] / 1000.0, dose, c.name))
    return items
