"""Emulated network predictions: start maps for measuring the refinement on maps whose truth is known.

A trained network's error on layered maps is mostly blurred interfaces plus a smooth, map-wide velocity
error. :func:`network_like_start` makes both from a true map: a Gaussian blur of ``blur`` cells and a smooth
field (a 4 x 4 grid of N(0, 1) values upsampled bicubically to the map) scaled to ``smooth_error`` m/s rms.
With the defaults (1 cell, 20 m/s) the starts of the real FlatVel_A / CurveVel_A / FlatFault_A maps in
tests/data have a competition MAE of ~30-40 m/s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fwi.physics.acquisition import VMAX, VMIN


def gaussian_blur(v: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of maps ``[B, H, W]``, edge-replicated, radius ``3 sigma`` (cells)."""
    if sigma <= 0:
        return v
    r = max(1, round(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=v.dtype, device=v.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(v[:, None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y[:, 0]


def network_like_start(true: Tensor, *, blur: float = 1.0, smooth_error: float = 20.0, seed: int = 0) -> Tensor:
    """Blurred ``true`` ``[B, H, W]`` (m/s) plus a smooth error of ``smooth_error`` m/s rms per map, clipped to
    ``[VMIN, VMAX]``; the same ``seed`` gives the same error fields."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(true.shape[0], 1, 4, 4, generator=g, dtype=torch.float64)
    smooth = F.interpolate(coarse, size=tuple(true.shape[-2:]), mode="bicubic", align_corners=True)[:, 0]
    smooth = smooth / smooth.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    error = (smooth_error * smooth).to(device=true.device, dtype=true.dtype)
    return (gaussian_blur(true, blur) + error).clamp(VMIN, VMAX)
