"""ResNet denoiser: residual blocks at full resolution predicting the noise (DnCNN-style)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import conv3

__all__ = ["ResNetDenoiser"]


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv3(c, c), nn.ReLU(inplace=True), conv3(c, c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class ResNetDenoiser(nn.Module):
    dose_conditioned = False

    def __init__(self, width: int = 32, blocks: int = 4):
        super().__init__()
        self.head = nn.Sequential(conv3(1, width), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.tail = conv3(width, 1)
        nn.init.zeros_(self.tail.weight)  # start as the identity
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        return x - self.tail(self.body(self.head(x)))
