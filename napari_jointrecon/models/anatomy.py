"""The anatomy prior: a small tissue-class network whose frozen features define a perceptual loss.

RadImageNet weights cannot be downloaded here, so the anatomy-aware NAFNet uses a prior trained in
the project: this network learns to label full-dose CT into air, lung, fat, soft tissue and bone
(labels from HU ranges after smoothing, so it must learn shapes and context, not thresholds on
noise). Its intermediate features respond to tissue boundaries; the perceptual loss compares them
between the denoised and the full-dose image.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import conv3

__all__ = ["TissueNet", "tissue_labels", "TISSUE_CLASSES"]

TISSUE_CLASSES = ("air", "lung", "fat", "soft_tissue", "bone")
# upper HU bounds of each class (model scale is (HU + 1000) / 2000)
_BOUNDS_HU = (-900.0, -300.0, -30.0, 200.0)


def tissue_labels(clean: torch.Tensor) -> torch.Tensor:
    """Class index per pixel from a full-dose image in model scale, after 5x5 smoothing."""
    hu = F.avg_pool2d(clean * 2000.0 - 1000.0, 5, stride=1, padding=2, count_include_pad=False)
    labels = torch.zeros_like(hu, dtype=torch.long)
    for bound in _BOUNDS_HU:
        labels += (hu > bound).long()
    return labels[:, 0]


class TissueNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(conv3(1, w), nn.ReLU(inplace=True), conv3(w, w), nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(conv3(w, 2 * w, 2), nn.ReLU(inplace=True), conv3(2 * w, 2 * w),
                                    nn.ReLU(inplace=True))
        self.stage3 = nn.Sequential(conv3(2 * w, 4 * w, 2), nn.ReLU(inplace=True), conv3(4 * w, 4 * w),
                                    nn.ReLU(inplace=True))
        self.head = nn.Conv2d(w + 2 * w + 4 * w, len(TISSUE_CLASSES), 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        return [f1, f2, f3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1, f2, f3 = self.features(x)
        size = f1.shape[-2:]
        up = [f1, F.interpolate(f2, size=size, mode="bilinear", align_corners=False),
              F.interpolate(f3, size=size, mode="bilinear", align_corners=False)]
        return self.head(torch.cat(up, 1))

    def perceptual(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean L1 distance between the features of two images (the network stays frozen)."""
        fa, fb = self.features(a), self.features(b)
        return sum(F.l1_loss(x, y) for x, y in zip(fa, fb)) / len(fa)
