"""U-Net denoiser, built for speed on the CPU (the default model).

The image is folded 2x2 into four channels (pixel unshuffle, lossless), processed by a three-level
U-Net at half, quarter and eighth resolution, unfolded, and subtracted from the input as a noise
estimate (residual learning). Skips are added, not concatenated, which halves the decoder's cost.
With ``dose_conditioned=True`` an MLP of log(dose) scales and shifts the encoder's features (FiLM),
so that one network removes the right amount of noise at every dose.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import ConvBlock, DoseEmbedding, conv3

__all__ = ["UNetDenoiser"]


class UNetDenoiser(nn.Module):
    def __init__(self, width: int = 32, depth_blocks: tuple[int, int, int] = (1, 2, 2),
                 dose_conditioned: bool = False):
        super().__init__()
        self.dose_conditioned = dose_conditioned
        w1, w2, w3 = width, 2 * width, 2 * width
        self.unshuffle = nn.PixelUnshuffle(2)
        self.head = nn.Sequential(conv3(4, w1), nn.ReLU(inplace=True))
        self.enc1 = ConvBlock(w1, w1, depth_blocks[0])
        self.down1 = nn.Sequential(conv3(w1, w2, stride=2), nn.ReLU(inplace=True))
        self.enc2 = ConvBlock(w2, w2, depth_blocks[1])
        self.down2 = nn.Sequential(conv3(w2, w3, stride=2), nn.ReLU(inplace=True))
        self.mid = ConvBlock(w3, w3, depth_blocks[2])
        self.up2 = nn.Sequential(nn.Conv2d(w3, w2 * 4, 1), nn.PixelShuffle(2))
        self.dec2 = ConvBlock(w2, w2, 1)
        self.up1 = nn.Sequential(nn.Conv2d(w2, w1 * 4, 1), nn.PixelShuffle(2))
        self.dec1 = ConvBlock(w1, w1, 1)
        self.tail = conv3(w1, 4)
        self.shuffle = nn.PixelShuffle(2)
        # start as the identity: the noise estimate is zero until training gives it a reason
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.dose_mlp = DoseEmbedding([w1, w2, w3]) if dose_conditioned else None

    def forward(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        films = [None] * 3
        if self.dose_mlp is not None:
            if dose is None:
                raise ValueError("this model is dose-conditioned: pass the dose fraction")
            films = self.dose_mlp(dose.to(x.device))

        def film(h, i):
            return h if films[i] is None else h * (1 + films[i][0]) + films[i][1]

        s1 = film(self.enc1(self.head(self.unshuffle(x))), 0)
        s2 = film(self.enc2(self.down1(s1)), 1)
        m = film(self.mid(self.down2(s2)), 2)
        d2 = self.dec2(self.up2(m) + s2)
        d1 = self.dec1(self.up1(d2) + s1)
        return x - self.shuffle(self.tail(d1))
