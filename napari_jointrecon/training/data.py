"""Training data: real CT from ../shared/data and the phantom, split by slabs, with simulated dose.

Splits (EVALUATION.md: by volume or contiguous slabs at least 10 mm apart, never random slices):

* chest series (141 slices at 2 mm): train slices 0-94, validation 100-114, test 120-140; the
  5-slice gaps are 10 mm;
* torso NIfTI volumes (example_ct, aorta_crop_ct): training only;
* thorax phantom: seeds 1 and 2 for training, seed 7 for the noise-free test.

Low-dose images are made on the fly from cached noise bases (``dose.insertion_noise_basis``): any
dose fraction costs one multiply-add, so doses are drawn from {10, 25, 50, 70} % and, one time in
five, uniformly from [5, 100] %. For the noise-free phantom the Poisson noise is approximated by
the same Gaussian basis with variance exp(p)/(a I0) (evaluation uses the exact Poisson simulation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..dose import DOSE_LEVELS, combine_insertion_noise, insertion_noise_basis
from ..io import load_ct
from ..phantom import make_thorax_phantom
from ..volume import CTVolume

__all__ = ["SPLITS", "shared_data_dir", "load_chest", "NoiseCache", "build_cache", "PatchSampler",
           "validation_set", "test_set", "TEST_SEED"]

SPLITS = {"train": range(0, 95), "val": range(100, 115), "test": range(120, 141)}
TORSO_FILES = ("example_ct.nii.gz", "aorta_crop_ct.nii.gz")
PHANTOM_TRAIN_SEEDS = (1, 2)
PHANTOM_TEST_SEED = 7
#: Noise seed of the validation and test sets (the same for every model).
TEST_SEED = 1234


def shared_data_dir() -> Path:
    """The real CT data: ``$JOINTRECON_SHARED_DATA``, ``../shared/data`` beside the checkout, or the
    download cache (:func:`napari_jointrecon.testdata.require`, which raises ``DataNotFound``)."""
    from ..testdata import require

    return require()


def load_chest() -> CTVolume:
    return load_ct(shared_data_dir() / "chest-ct-dicom")


@dataclass
class NoiseCache:
    """Clean slices and their noise bases, in HU (float32 / float16)."""

    name: str
    clean: np.ndarray       # (n, H, W)
    n1: np.ndarray          # (r, n, H, W) realisations of the first basis
    n2: np.ndarray          # (r, n, H, W) electronic-noise basis
    noise_free: bool        # True for the phantom (noise comes from the full dose too)

    def low(self, index: int, realisation: int, dose: float, sl=np.s_[:, :]) -> np.ndarray:
        clean = self.clean[index][sl]
        n1 = self.n1[realisation, index][sl].astype(np.float32)
        n2 = self.n2[realisation, index][sl].astype(np.float32)
        if self.noise_free:
            return clean + n1 / math.sqrt(dose) + n2 / dose
        return clean + combine_insertion_noise(n1, n2, dose)


def _basis(hu: np.ndarray, pixel_mm: float, seeds, log) -> tuple[np.ndarray, np.ndarray]:
    n1 = np.empty((len(seeds),) + hu.shape, np.float16)
    n2 = np.empty_like(n1)
    for r, seed in enumerate(seeds):
        for k0 in range(0, hu.shape[0], 4):
            a, b = insertion_noise_basis(hu[k0:k0 + 4], pixel_mm, seed=seed, first_index=k0)
            n1[r, k0:k0 + 4], n2[r, k0:k0 + 4] = a, b
        log(f"  noise realisation {r + 1}/{len(seeds)} done")
    return n1, n2


def build_cache(cache_dir: str | Path, *, realisations: int = 2, log=print,
                only: tuple[str, ...] | None = None) -> dict[str, NoiseCache]:
    """Compute (or load) the noise caches for every training/validation/test source (or ``only``)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    caches: dict[str, NoiseCache] = {}

    def cached(name: str, make):
        if only is not None and name not in only:
            return
        path = cache_dir / f"{name}.npz"
        if path.exists():
            with np.load(path) as z:
                caches[name] = NoiseCache(name, z["clean"], z["n1"], z["n2"], bool(z["noise_free"]))
            return
        t0 = time.perf_counter()
        log(f"building noise cache {name} ...")
        clean, pixel, noise_free, seeds = make()
        n1, n2 = _basis(clean, pixel, seeds, log)
        np.savez(path, clean=clean, n1=n1, n2=n2, noise_free=noise_free)
        caches[name] = NoiseCache(name, clean, n1, n2, noise_free)
        log(f"  {name}: {clean.shape} in {time.perf_counter() - t0:.0f} s")

    chest = None

    def chest_split(split):
        nonlocal chest
        if chest is None:
            chest = load_chest()
        hu = chest.hu[SPLITS[split].start:SPLITS[split].stop]
        seeds = list(range(realisations)) if split == "train" else [TEST_SEED]
        return np.ascontiguousarray(hu), float(np.sqrt(chest.spacing[1] * chest.spacing[2])), False, seeds

    for split in ("train", "val", "test"):
        cached(f"chest_{split}", lambda s=split: chest_split(s))
    for fname in TORSO_FILES:
        def torso(f=fname):
            v = load_ct(shared_data_dir() / "torso-ct-nifti" / f)
            return v.hu, float(np.sqrt(v.spacing[1] * v.spacing[2])), False, list(range(realisations))
        cached("torso_" + fname.split(".")[0], torso)
    for seed in PHANTOM_TRAIN_SEEDS:
        def phantom(s=seed):
            v = make_thorax_phantom(1.0, z_extent_mm=60, seed=s)
            return v.hu, 1.0, True, list(range(realisations))
        cached(f"phantom_{seed}", phantom)
    return caches


class PatchSampler:
    """Random training patches ``(low, clean, dose)`` in model scale, with flips and rotations."""

    def __init__(self, caches: dict[str, NoiseCache], *, patch: int = 96, seed: int = 0,
                 weights: dict[str, float] | None = None, continuous_fraction: float = 0.2):
        self.sources = [c for n, c in caches.items() if not n.startswith(("chest_val", "chest_test"))]
        default = {"chest_train": 0.65}
        w = np.array([(weights or default).get(c.name, 0.35 / max(len(self.sources) - 1, 1))
                      for c in self.sources])
        self.p = w / w.sum()
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.continuous_fraction = continuous_fraction

    def dose(self) -> float:
        if self.rng.random() < self.continuous_fraction:
            return float(self.rng.uniform(0.05, 1.0))
        return float(self.rng.choice(DOSE_LEVELS))

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lows, cleans, doses = [], [], []
        for _ in range(batch):
            src = self.sources[self.rng.choice(len(self.sources), p=self.p)]
            n, h, w = src.clean.shape
            ps = min(self.patch, h, w)
            for _try in range(10):
                k = int(self.rng.integers(n))
                y, x = int(self.rng.integers(h - ps + 1)), int(self.rng.integers(w - ps + 1))
                sl = np.s_[y:y + ps, x:x + ps]
                if (src.clean[k][sl] > -500).mean() > 0.3:
                    break
            dose = self.dose()
            r = int(self.rng.integers(src.n1.shape[0]))
            low = src.low(k, r, dose, sl)
            clean = src.clean[k][sl]
            turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            low, clean = np.rot90(low, turns), np.rot90(clean, turns)
            if flip:
                low, clean = low[:, ::-1], clean[:, ::-1]
            if ps < self.patch:  # small sources: pad with air
                pad = ((0, self.patch - ps), (0, self.patch - ps))
                low = np.pad(low, pad, constant_values=-1000.0)
                clean = np.pad(clean, pad, constant_values=-1000.0)
            lows.append(np.ascontiguousarray(low))
            cleans.append(np.ascontiguousarray(clean))
            doses.append(dose)
        to = lambda a: (torch.from_numpy(np.stack(a)[:, None].astype(np.float32)) + 1000.0) / 2000.0  # noqa: E731
        return to(lows), to(cleans), torch.tensor(doses, dtype=torch.float32)


def _fixed_set(cache: NoiseCache, crop: int | None) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    items = []
    n, h, w = cache.clean.shape
    sl = np.s_[:, :] if crop is None else np.s_[(h - crop) // 2:(h + crop) // 2, (w - crop) // 2:(w + crop) // 2]
    for dose in DOSE_LEVELS:
        low = np.stack([cache.low(k, 0, dose, sl) for k in range(n)])
        clean = cache.clean[:, sl[0], sl[1]]
        items.append((torch.from_numpy((low[:, None] + 1000.0) / 2000.0).float(),
                      torch.from_numpy((clean[:, None] + 1000.0) / 2000.0).float(), dose))
    return items


def validation_set(caches: dict[str, NoiseCache], crop: int = 256):
    """Chest validation slabs at the four doses (centre crops), for model selection."""
    return _fixed_set(caches["chest_val"], crop)


def test_set(caches: dict[str, NoiseCache]):
    """Chest test slabs at the four doses, full slices (the same noise as simulate_low_dose)."""
    return _fixed_set(caches["chest_test"], None)
