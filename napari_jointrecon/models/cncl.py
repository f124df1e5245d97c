"""CNCL: content-noise complementary learning (Geng et al., 2021), with a PatchGAN discriminator.

Two U-Net branches see the same low-dose image: the content branch predicts the clean image, the
noise branch predicts the noise. Their estimates (content, and input minus noise) are concatenated
and fused by a 1x1 convolution. Training adds an adversarial loss from a PatchGAN discriminator to
the L1 loss (see ``training/recipes.py``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import in_fp32
from .unet import UNetDenoiser

__all__ = ["CNCL", "PatchDiscriminator"]


class CNCL(nn.Module):
    dose_conditioned = False

    def __init__(self, width: int = 24):
        super().__init__()
        self.content = UNetDenoiser(width)  # residual U-Net: returns a clean-image estimate
        self.noise = UNetDenoiser(width)    # its residual is read as the noise estimate
        self.fuse = nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.fuse.weight.fill_(0.5)
            self.fuse.bias.zero_()

    def forward(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        content = self.content(x)
        noise = x - self.noise(x)
        return in_fp32(self.fuse, torch.cat([content.float(), (x - noise).float()], dim=1))  # the image itself


class PatchDiscriminator(nn.Module):
    """PatchGAN: a score per overlapping patch (about 34 px receptive field)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 1, 1), nn.InstanceNorm2d(4 * w), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 4, 1, 1),
        )

    def forward(self, x):
        return self.net(x)
