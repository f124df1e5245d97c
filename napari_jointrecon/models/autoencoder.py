"""Convolutional autoencoder: the baseline of the anatomy-aware denoising design.

An encoder of conv blocks with two stride-2 stages and a mirrored decoder of transposed
convolutions that outputs the clean image directly (no residual shortcut, as in the design).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import conv3, in_fp32

__all__ = ["ConvAutoencoder"]


class ConvAutoencoder(nn.Module):
    dose_conditioned = False

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            conv3(1, w), nn.ReLU(inplace=True),
            conv3(w, 2 * w, stride=2), nn.ReLU(inplace=True),
            conv3(2 * w, 2 * w, stride=2), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            conv3(w, 1),
        )

    def forward(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        return in_fp32(self.decoder[-1], self.decoder[:-1](self.encoder(x)))  # the image itself
