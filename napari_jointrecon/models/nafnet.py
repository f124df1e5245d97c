"""NAFNet denoiser with dose conditioning, and its teacher-student split.

NAFNet (Chen et al., 2022) blocks: LayerNorm, 1x1 expansion, depthwise 3x3, SimpleGate, simplified
channel attention, and a gated feed-forward part, each with a learned residual scale. The image is
folded 2x2 (pixel unshuffle) first, as in the U-Net, to keep full-resolution work small.

Dose conditioning (the design's "MLP" variant): an MLP maps log(dose) to a per-channel scale and
shift applied after each block's first normalisation (FiLM). ``dose_conditioned=False`` gives the
ablation without it.

The network is split into :meth:`NAFNet.encode` (all features the decoder uses: the skips and the
bottleneck, the "latent") and :meth:`NAFNet.decode`, so that teacher-student training can match a
student encoder's latent to a teacher's and share the teacher's decoder. For that the decoder
reconstructs the image from the latent alone (``residual=False``): a teacher autoencoder of
full-dose images defines the latent space, and the student encoder learns to map low-dose images
(and their dose) into it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import DoseEmbedding, in_fp32

__all__ = ["NAFNet", "NAFBlock"]


class LayerNorm2d(nn.Module):
    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv2 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.ffn1 = nn.Conv2d(c, 2 * c, 1)
        self.ffn2 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x, film=None):
        y = self.norm1(x)
        if film is not None:
            scale, shift = film
            y = y * (1 + scale) + shift
        y = self.gate(self.dw(self.conv1(y)))
        y = y * self.sca(y)
        x = x + self.conv2(y) * self.beta
        y = self.ffn2(self.gate(self.ffn1(self.norm2(x))))
        return x + y * self.gamma


class NAFNet(nn.Module):
    """Two-level NAFNet U-shape on the 2x2-folded image, predicting the noise (residual)."""

    def __init__(self, width: int = 24, enc_blocks: tuple[int, int] = (1, 1), mid_blocks: int = 2,
                 dec_blocks: tuple[int, int] = (1, 1), dose_conditioned: bool = True,
                 residual: bool = True):
        super().__init__()
        self.dose_conditioned = dose_conditioned
        self.residual = residual
        w = width
        self.unshuffle = nn.PixelUnshuffle(2)
        self.intro = nn.Conv2d(4, w, 3, padding=1)
        self.enc1 = nn.ModuleList([NAFBlock(w) for _ in range(enc_blocks[0])])
        self.down1 = nn.Conv2d(w, 2 * w, 2, stride=2)
        self.enc2 = nn.ModuleList([NAFBlock(2 * w) for _ in range(enc_blocks[1])])
        self.down2 = nn.Conv2d(2 * w, 4 * w, 2, stride=2)
        self.mid = nn.ModuleList([NAFBlock(4 * w) for _ in range(mid_blocks)])
        self.up2 = nn.Sequential(nn.Conv2d(4 * w, 8 * w, 1, bias=False), nn.PixelShuffle(2))
        self.dec2 = nn.ModuleList([NAFBlock(2 * w) for _ in range(dec_blocks[1])])
        self.up1 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 1, bias=False), nn.PixelShuffle(2))
        self.dec1 = nn.ModuleList([NAFBlock(w) for _ in range(dec_blocks[0])])
        self.ending = nn.Conv2d(w, 4, 3, padding=1)
        if residual:  # start as the identity
            nn.init.zeros_(self.ending.weight)
            nn.init.zeros_(self.ending.bias)
        self.shuffle = nn.PixelShuffle(2)
        enc_channels = [w] * enc_blocks[0] + [2 * w] * enc_blocks[1] + [4 * w] * mid_blocks
        self.dose_mlp = DoseEmbedding(enc_channels) if dose_conditioned else None

    @staticmethod
    def _run(blocks, x, films):
        for block in blocks:
            x = block(x, next(films) if films is not None else None)
        return x

    def encode(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Features used by the decoder: [skip at 1/2, skip at 1/4, bottleneck at 1/8]."""
        films = None
        if self.dose_mlp is not None:
            if dose is None:
                raise ValueError("this model is dose-conditioned: pass the dose fraction")
            films = iter(self.dose_mlp(dose.to(x.device)))
        s1 = self._run(self.enc1, self.intro(self.unshuffle(x)), films)
        s2 = self._run(self.enc2, self.down1(s1), films)
        m = self._run(self.mid, self.down2(s2), films)
        return [s1, s2, m]

    def decoder_modules(self) -> list[nn.Module]:
        return [self.up2, self.dec2, self.up1, self.dec1, self.ending]

    def decode(self, x: torch.Tensor, latent: list[torch.Tensor]) -> torch.Tensor:
        """The image from the latent; with ``residual=False`` (teacher-student) ``x`` is unused."""
        s1, s2, m = latent
        d2 = self._run(self.dec2, self.up2(m) + s2, None)
        d1 = self._run(self.dec1, self.up1(d2) + s1, None)
        if self.residual:  # the noise, subtracted in fp32
            return x - self.shuffle(self.ending(d1))
        return self.shuffle(in_fp32(self.ending, d1))  # the image itself

    def forward(self, x: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(x, self.encode(x, dose))
