"""Building blocks shared by the denoisers.

Every learned denoiser takes ``x`` of shape ``(B, 1, H, W)`` in the model scale
``(HU + 1000) / 2000`` (not clipped, so bone above 1000 HU survives) and a dose fraction ``dose`` of
shape ``(B,)``, and returns the denoised image in the same scale. ``H`` and ``W`` must be multiples
of :data:`SIZE_MULTIPLE`; the inference engine pads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SIZE_MULTIPLE", "hu_to_model", "model_to_hu", "DoseEmbedding", "conv3", "ConvBlock"]

#: Inputs are padded to a multiple of this (pixel unshuffle and two stride-2 levels).
SIZE_MULTIPLE = 16


def hu_to_model(hu: torch.Tensor) -> torch.Tensor:
    return (hu + 1000.0) / 2000.0


def model_to_hu(x: torch.Tensor) -> torch.Tensor:
    return x * 2000.0 - 1000.0


def in_fp32(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``layer(h)`` in fp32 even under bf16 autocast: for a network's last layer when its output is
    the image itself (not a residual subtracted in fp32), which bf16's 8-bit mantissa would round
    to steps of about 8 HU at soft tissue (16 HU at bone)."""
    with torch.autocast(h.device.type, enabled=False):
        return layer(h.float())


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ConvBlock(nn.Sequential):
    """conv 3x3 -> ReLU, ``n`` times."""

    def __init__(self, cin: int, cout: int, n: int = 1):
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [conv3(cin if i == 0 else cout, cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class DoseEmbedding(nn.Module):
    """MLP from the dose fraction to per-channel (scale, shift) pairs for FiLM conditioning.

    The input is ``log(dose)`` (noise variance grows as 1/dose), so 10 % and 25 % are as far apart
    as 25 % and 62.5 %.
    """

    def __init__(self, channels: list[int], hidden: int = 32):
        super().__init__()
        self.channels = list(channels)
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * sum(self.channels)))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, dose: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        d = torch.log(dose.clamp(1e-3, 1.0)).reshape(-1, 1).float()
        out = self.mlp(d)
        pairs = []
        start = 0
        for c in self.channels:
            scale = out[:, start:start + c, None, None]
            shift = out[:, start + c:start + 2 * c, None, None]
            pairs.append((scale, shift))
            start += 2 * c
        return pairs


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the last two dims up to a multiple; returns the padded tensor and the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
