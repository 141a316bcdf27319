"""The left-right survey flip: one definition for training augmentation, flip TTA and synthetic data.

Mirroring the survey about the middle of the line reverses the receivers (x -> 69 - x), the order of the
sources (the shot at x = 0 becomes the shot at x = 69) and the velocity map along x. The mirrored velocity map
is exact; the mirrored seismic is exact only up to the middle source sitting at x = 34, not 34.5
(docs/physics.md), so a flipped map re-simulated differs slightly from the flipped data.

Both functions take numpy arrays (returning a view with negative strides: copy it with
``np.ascontiguousarray`` before ``torch.from_numpy``) or torch tensors (returning a copy), with any leading
batch axes, and are their own inverse.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _reverse(x: Array, axes: tuple[int, ...]) -> Array:
    return x.flip(axes) if isinstance(x, torch.Tensor) else np.flip(x, axes)


def flip_seismic(seismic: Array) -> Array:
    """Raw seismic ``[..., 5, T, 70]`` (source, time step, receiver) of the mirrored survey: sources and
    receivers reversed, time untouched."""
    return _reverse(seismic, (-3, -1))


def flip_velocity(velocity: Array) -> Array:
    """Velocity ``[..., 70, 70]`` (depth, x) in m/s of the mirrored survey: x reversed."""
    return _reverse(velocity, (-1,))
