"""RED-CNN (Chen et al., 2017): residual encoder-decoder CNN, the literature baseline.

Five 5x5 convolutions without padding, five mirrored transposed convolutions, and shortcuts from
the input and every second layer. The original uses 96 channels; 32 keep it trainable and usable on
a CPU (the card states it).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["REDCNN"]


class REDCNN(nn.Module):
    dose_conditioned = False

    def __init__(self, width: int = 32):
        super().__init__()
        c = width
        self.enc = nn.ModuleList([nn.Conv2d(1 if i == 0 else c, c, 5) for i in range(5)])
        self.dec = nn.ModuleList([nn.ConvTranspose2d(c, 1 if i == 4 else c, 5) for i in range(5)])
        nn.init.zeros_(self.dec[4].weight)  # with the input shortcut: start as the identity
        nn.init.zeros_(self.dec[4].bias)

    def forward(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        r1 = x
        h = torch.relu(self.enc[0](x))
        h = torch.relu(self.enc[1](h))
        r2 = h
        h = torch.relu(self.enc[2](h))
        h = torch.relu(self.enc[3](h))
        r3 = h
        h = torch.relu(self.enc[4](h))
        h = self.dec[0](h) + r3
        h = self.dec[1](torch.relu(h))
        h = self.dec[2](torch.relu(h)) + r2
        h = self.dec[3](torch.relu(h))
        h = self.dec[4](torch.relu(h)) + r1
        return h
