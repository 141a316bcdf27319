"""Velocity-space augmentations: new, valid velocity maps from existing ones, to re-simulate seismic from.

Every op takes float ``[B, NZ, NX]`` maps (depth, x) in m/s and returns a new tensor of the same shape, finite and
within ``[VMIN, VMAX]``. Random ops draw from a ``torch.Generator`` (on the generator's device; the draws are moved
to the maps' device), so a seeded generator makes them reproducible. Warps resample with ``grid_sample`` and
``padding_mode='border'``: points pulled from outside the map take the edge value, never zero.

:func:`augment` composes them with the probabilities and strengths of a :class:`VelocityAugment`. Its defaults
keep maps realistic (``benchmarks/realism.py`` measures it): small depth stretches resampled nearest-neighbour
(layers stay flat and pixel-sharp) and velocity scalings that keep integer maps integer. Warps, rotations and
blends bend flat layers and leave in-between values that real maps never show, and left-right flips turn real
CurveVel_A maps the wrong way round (their curves swing harder on the right in 80 % of them: flipped synthetic
maps raise the realism AUC from 0.66 to 0.77); they are in :data:`STRONG`, for when variety matters more than
realism. Flipping a velocity map is exact; flipping the *seismic* is not (docs/physics.md), so flipped maps
should be re-simulated rather than paired with flipped data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from fwi.flip import flip_velocity
from fwi.physics.acquisition import VMAX, VMIN


@dataclass(frozen=True)
class VelocityAugment:
    """Probabilities (per map) and strengths of the ops :func:`augment` applies, in the order listed."""

    p_blend: float = 0.0
    """Probability of blending a map with another map of the batch."""
    max_blend: float = 0.5
    """Weight of the partner map, drawn from ``U(0, max_blend)``."""
    p_elastic: float = 0.0
    """Probability of a smooth elastic warp."""
    elastic_alpha_px: float = 2.0
    """Std of the elastic displacement, pixels."""
    elastic_sigma_px: float = 10.0
    """Length scale of the elastic displacement (its control grid spacing), pixels."""
    p_affine: float = 0.0
    """Probability of a small affine warp."""
    max_rotate_deg: float = 5.0
    """Rotation drawn from ``U(-max, max)``, degrees."""
    max_shear: float = 0.05
    """Shear factor (x shifts by ``shear * z``) drawn from ``U(-max, max)``."""
    max_translate_px: float = 3.0
    """Shift in x and in z drawn from ``U(-max, max)``, pixels."""
    p_stretch: float = 0.3
    """Probability of a vertical (depth) stretch anchored at the surface."""
    max_stretch: float = 0.1
    """Depth scale factor drawn from ``U(1 - max, 1 + max)``."""
    p_scale: float = 0.3
    """Probability of scaling all velocities of a map."""
    max_scale: float = 0.1
    """Velocity factor drawn from ``U(1 - max, 1 + max)`` (then clamped to the valid range)."""
    p_flip: float = 0.0
    """Probability of a left-right flip (off by default: real CurveVel_A maps have a preferred side)."""
    mode: str = "nearest"
    """Resampling of the warps: ``nearest`` (keeps interfaces sharp and values those of the map), ``bilinear`` or
    ``bicubic`` (smooth interfaces by < 1 px, leaving in-between values)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be a probability in [0, 1], got {value}")
            if f.name != "mode" and not f.name.startswith("p_") and value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        if self.mode not in ("bilinear", "nearest", "bicubic"):
            raise ValueError(f"mode must be 'bilinear', 'nearest' or 'bicubic', got {self.mode!r}")
        if self.max_stretch >= 1 or self.max_scale >= 1 or self.max_blend > 1:
            raise ValueError("max_stretch and max_scale must be < 1, max_blend <= 1")


STRONG = VelocityAugment(p_blend=0.1, p_elastic=0.2, p_affine=0.3, max_stretch=0.15, p_flip=0.5, mode="bilinear")
"""Stronger warps (blends, elastic and affine warps, flips, bilinear resampling): more varied maps, less realistic
ones."""


def _uniform(generator: torch.Generator, shape: tuple[int, ...], lo: float, hi: float, device) -> torch.Tensor:
    """Uniform draws in ``[lo, hi)`` from ``generator``, returned on ``device``."""
    u = torch.rand(shape, generator=generator, device=generator.device)
    return (lo + (hi - lo) * u).to(device)


def _valid(maps: torch.Tensor) -> torch.Tensor:
    return maps.clamp(VMIN, VMAX)


def _sample(maps: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample ``[B, H, W]`` maps at ``grid [B, H, W, 2]`` (normalised (x, z), ``align_corners=False``)."""
    out = F.grid_sample(maps[:, None], grid, mode=mode, padding_mode="border", align_corners=False)[:, 0]
    return _valid(out)


def _identity_grid(b: int, h: int, w: int, device) -> torch.Tensor:
    """Normalised pixel-centre coordinates ``[b, h, w, 2]`` (x, z) for ``align_corners=False``."""
    z = (2 * torch.arange(h, device=device, dtype=torch.float32) + 1) / h - 1
    x = (2 * torch.arange(w, device=device, dtype=torch.float32) + 1) / w - 1
    return torch.stack(torch.meshgrid(x, z, indexing="xy"), -1).expand(b, h, w, 2)


def affine_warp(
    maps: torch.Tensor,
    generator: torch.Generator,
    max_rotate_deg: float = 5.0,
    max_shear: float = 0.05,
    max_translate_px: float = 3.0,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Rotate, shear and shift each ``[B, NZ, NX]`` map by small random amounts (about the map centre).

    Rotation ``U(+-max_rotate_deg)`` degrees, x-shear ``U(+-max_shear)`` per row, shifts ``U(+-max_translate_px)``
    pixels in x and z; edges are replicated. Returns ``[B, NZ, NX]`` m/s.
    """
    b, h, w = maps.shape
    angle = torch.deg2rad(_uniform(generator, (b,), -max_rotate_deg, max_rotate_deg, maps.device))
    shear = _uniform(generator, (b,), -max_shear, max_shear, maps.device)
    shift = _uniform(generator, (b, 2), -max_translate_px, max_translate_px, maps.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # input = R @ S @ output + t, in normalised coordinates (square pixels: w == h for the competition maps)
    theta = torch.stack(
        [
            torch.stack([cos, cos * shear - sin, 2 * shift[:, 0] / w], -1),
            torch.stack([sin, sin * shear + cos, 2 * shift[:, 1] / h], -1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    return _sample(maps, grid, mode)


def elastic_warp(
    maps: torch.Tensor,
    generator: torch.Generator,
    alpha_px: float = 2.0,
    sigma_px: float = 10.0,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Warp ``[B, NZ, NX]`` maps by a smooth random displacement field.

    The displacement (x and z) is Gaussian noise on a control grid spaced ``sigma_px`` pixels, interpolated
    bicubically to every pixel and scaled to std ``alpha_px`` pixels. Edges are replicated.
    """
    b, h, w = maps.shape
    coarse = (max(2, math.ceil(h / sigma_px) + 1), max(2, math.ceil(w / sigma_px) + 1))
    noise = torch.randn((b, 2, *coarse), generator=generator, device=generator.device).to(maps.device)
    disp = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)  # [b, 2, h, w], (x, z)
    disp = disp / disp.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * alpha_px
    scale = torch.tensor([2.0 / w, 2.0 / h], device=maps.device)
    grid = _identity_grid(b, h, w, maps.device) + disp.permute(0, 2, 3, 1) * scale
    return _sample(maps, grid, mode)


def vertical_stretch(
    maps: torch.Tensor, generator: torch.Generator, max_stretch: float = 0.15, mode: str = "bilinear"
) -> torch.Tensor:
    """Scale depth by ``s ~ U(1 - max_stretch, 1 + max_stretch)`` per map, anchored at the surface.

    Row ``z`` of the output is row ``z / s`` of the input: ``s > 1`` thickens the layers (the deepest rows
    leave the window), ``s < 1`` thins them (the last row is repeated below). Returns ``[B, NZ, NX]`` m/s.
    """
    b, h, w = maps.shape
    s = _uniform(generator, (b,), 1.0 - max_stretch, 1.0 + max_stretch, maps.device)
    grid = _identity_grid(b, h, w, maps.device).clone()
    z_pix = (grid[..., 1] + 1) * h / 2 - 0.5  # pixel row of every output point
    z_src = (z_pix + 0.5) / s.view(b, 1, 1) - 0.5  # stretch about the top edge of the map
    grid[..., 1] = (2 * z_src + 1) / h - 1
    return _sample(maps, grid, mode)


def blend(a: torch.Tensor, b: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """``(1 - weight) * a + weight * b`` for ``[B, NZ, NX]`` maps; ``weight`` a float or ``[B]`` in [0, 1].

    ``weight = 0`` returns ``a``, ``weight = 1`` returns ``b`` (both clamped to the valid range).
    """
    w = torch.as_tensor(weight, dtype=a.dtype, device=a.device)
    if w.ndim == 1:
        w = w.view(-1, 1, 1)
    if torch.any((w < 0) | (w > 1)):
        raise ValueError("blend weight must lie in [0, 1]")
    return _valid(torch.lerp(a, b, w))


def scale_velocity(maps: torch.Tensor, generator: torch.Generator, max_scale: float = 0.1) -> torch.Tensor:
    """Multiply each ``[B, NZ, NX]`` map by ``U(1 - max_scale, 1 + max_scale)``, clamped to [VMIN, VMAX].

    Pixels holding whole m/s stay whole (rounded after scaling): the layered real maps are integer-valued.
    """
    s = _uniform(generator, (maps.shape[0],), 1.0 - max_scale, 1.0 + max_scale, maps.device)
    out = maps * s.view(-1, 1, 1)
    return _valid(torch.where(maps == maps.round(), out.round(), out))


def augment(maps: torch.Tensor, generator: torch.Generator, params: VelocityAugment | None = None) -> torch.Tensor:
    """Apply the ops of ``params`` (default :class:`VelocityAugment`) to random subsets of ``[B, NZ, NX]`` maps.

    In order: blend with a random other map of the batch, elastic warp, affine warp, vertical stretch, velocity
    scaling, left-right flip; each map takes each op independently with its probability. Returns a new
    ``[B, NZ, NX]`` tensor in [VMIN, VMAX]; ``maps`` is left unchanged.
    """
    p = params or VelocityAugment()
    out = _valid(maps.float())
    b = out.shape[0]
    if b == 0:
        return out

    def apply(prob: float, op: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if prob <= 0:
            return
        chosen = (_uniform(generator, (b,), 0.0, 1.0, out.device) < prob).nonzero().flatten()
        if len(chosen):
            out[chosen] = op(out[chosen])

    if b > 1 and p.p_blend > 0:
        chosen = (_uniform(generator, (b,), 0.0, 1.0, out.device) < p.p_blend).nonzero().flatten()
        if len(chosen):
            partner = torch.randint(0, b, (len(chosen),), generator=generator, device=generator.device)
            weight = _uniform(generator, (len(chosen),), 0.0, p.max_blend, out.device)
            out[chosen] = blend(out[chosen], out[partner.to(out.device)], weight)
    apply(p.p_elastic, lambda x: elastic_warp(x, generator, p.elastic_alpha_px, p.elastic_sigma_px, p.mode))
    apply(
        p.p_affine,
        lambda x: affine_warp(x, generator, p.max_rotate_deg, p.max_shear, p.max_translate_px, p.mode),
    )
    apply(p.p_stretch, lambda x: vertical_stretch(x, generator, p.max_stretch, p.mode))
    apply(p.p_scale, lambda x: scale_velocity(x, generator, p.max_scale))
    apply(p.p_flip, flip_velocity)  # the survey flip of fwi.flip, shared with training augmentation and TTA
    return out
