"""Training losses: SSIM (Gaussian window, Wang et al. 2004) and least-squares GAN terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssim", "l1_ssim_loss", "lsgan_d_loss", "lsgan_g_loss"]


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of two ``(B, 1, H, W)`` batches (valid region of the 11x11 Gaussian window)."""
    w = _gaussian_window(device=a.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a ** 2
    sbb = F.conv2d(b * b, w) - mu_b ** 2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean()


def l1_ssim_loss(out: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """L1 + w (1 - SSIM), the teacher loss of the anatomy-aware denoising design."""
    return F.l1_loss(out, target) + ssim_weight * (1 - ssim(out.clamp(0, 1), target.clamp(0, 1)))


def lsgan_d_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((real_score - 1) ** 2).mean() + 0.5 * (fake_score ** 2).mean()


def lsgan_g_loss(fake_score: torch.Tensor) -> torch.Tensor:
    return ((fake_score - 1) ** 2).mean()
