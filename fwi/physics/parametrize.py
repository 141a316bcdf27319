"""Low-dimensional parametrisations of a velocity map: the priors of the refinement.

A gradient through the exact simulator costs seconds on a CPU, so a refinement gets tens of them per map,
not thousands. The prior therefore lives in the parametrisation: each class maps a short parameter vector
``x`` ``[P]`` to a velocity map ``[nz, nx]`` (m/s, differentiable, clamped to ``[VMIN, VMAX]``) and holds
the starting vector built from the start map. Velocities are parametrised in units of ``VALUE_UNIT`` m/s so
that one unit of any parameter (a velocity or a depth in rows) changes the map by a comparable amount, which
keeps L-BFGS's first step and line search well scaled.

- :class:`Layers` (flat layers): one velocity per layer and one depth per interface, in fractional rows: a
  row an interface crosses gets the thickness-weighted mean of the two velocities, so the map (and the
  data) vary smoothly with the depths and the interfaces can move by less than a row per step.
- :class:`Blocks` (faulted flat layers): :class:`Layers` of their own in each block between fixed fault lines.
- :class:`Regions` (curved layers): one velocity per region of a fixed labelling.
- :class:`Smooth` (textures): the start map plus a smooth correction, a coarse grid upsampled bicubically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fwi.physics.acquisition import VMAX, VMIN
from fwi.physics.segment import fault_blocks, layer_edges, segment_regions

VALUE_UNIT = 100.0
"""m/s per unit of a velocity parameter."""

LAYER_PENALTY = 2.0e4
"""Cost per segment of :func:`~fwi.physics.segment.layer_edges` on the row-median profile, (m/s)^2: a step
of ~60 m/s between two 12-row layers becomes an interface, the smooth error of a start does not."""

WARP_GRID = 8
"""Control points per side of the :class:`Regions` warp (8 x 8 over the 70 x 70 map, ~10 cells apart)."""

SMOOTH_GRID = 8
"""Control points per side of the :class:`Smooth` correction (8 x 8 over the 70 x 70 map)."""


@dataclass
class Layers:
    """Laterally invariant layers: ``x = [velocities / VALUE_UNIT (K), interface depths in rows (K - 1)]``.

    Interface ``k`` at depth ``d`` puts rows ``z >= d`` below it: row ``z`` is covered by the lower layer
    for the fraction ``clamp(z + 1 - d, 0, 1)``, so integer depths give a sharp map.
    """

    x0: Tensor
    n_layers: int
    shape: tuple[int, int]
    name: str = "layers"

    @classmethod
    def from_map(cls, v0: Tensor, penalty: float = LAYER_PENALTY) -> Layers:
        """Layers of the row-median profile of ``v0`` ``[nz, nx]`` (m/s) (:func:`~fwi.physics.segment.layer_edges`)."""
        return cls.from_profile(v0.double().median(dim=1).values.cpu().numpy(), v0, penalty)

    @classmethod
    def from_profile(cls, profile: np.ndarray, like: Tensor, penalty: float = LAYER_PENALTY) -> Layers:
        """Layers of a depth profile ``[nz]`` (m/s), for maps of ``like``'s shape, dtype and device."""
        edges = layer_edges(profile, penalty)
        values = [float(np.median(profile[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        x0 = torch.tensor([v / VALUE_UNIT for v in values] + [float(e) for e in edges[1:-1]], dtype=like.dtype)
        return cls(x0.to(like.device), len(values), tuple(like.shape))

    def velocity(self, x: Tensor) -> Tensor:
        nz, nx = self.shape
        k = self.n_layers
        values, depths = x[:k] * VALUE_UNIT, x[k:]
        z = torch.arange(nz, dtype=x.dtype, device=x.device)
        below = (z[None, :] + 1 - depths[:, None]).clamp(0, 1)  # [K-1, nz] fraction under interface k
        profile = values[0] + ((values[1:] - values[:-1])[:, None] * below).sum(0)  # [nz]
        return profile.clamp(VMIN, VMAX)[:, None].expand(nz, nx)

    def rounded(self, x: Tensor) -> Tensor:
        """``x`` with every interface on a row boundary (a sharp map, as the competition's flat maps are)."""
        out = x.detach().clone()
        out[self.n_layers:] = out[self.n_layers:].round()
        return out


@dataclass
class Blocks:
    """Flat layers faulted along fixed lines: ``x`` = the :class:`Layers` parameters of each block, in turn.

    The blocks and their fault lines come from the start map (:func:`~fwi.physics.segment.fault_blocks`);
    each block starts from the row medians of the start over its cells (rows it does not reach take the
    nearest row it does). Every cell takes its block's layers, so a block is sharp at its fault lines.
    """

    x0: Tensor
    labels: Tensor
    """``[nz, nx]`` long, values ``0..B-1``."""
    blocks: list[Layers]
    name: str = "blocks"

    @classmethod
    def from_map(cls, v0: Tensor) -> Blocks:
        """Blocks of ``v0`` ``[nz, nx]`` (m/s) cut by :func:`~fwi.physics.segment.fault_blocks`."""
        v = v0.double().cpu().numpy()
        lab = fault_blocks(v)[1]
        blocks = []
        for b in range(int(lab.max()) + 1):
            inside = lab == b
            rows = np.flatnonzero(inside.any(axis=1))
            medians = np.array([np.median(v[r, inside[r]]) for r in rows])
            profile = medians[np.abs(np.arange(v.shape[0])[:, None] - rows[None, :]).argmin(axis=1)]
            blocks.append(Layers.from_profile(profile, v0))
        labels_t = torch.as_tensor(lab, dtype=torch.long, device=v0.device)
        return cls(torch.cat([b.x0 for b in blocks]), labels_t, blocks)

    def _split(self, x: Tensor) -> list[Tensor]:
        return list(x.split([b.x0.numel() for b in self.blocks]))

    def velocity(self, x: Tensor) -> Tensor:
        maps = torch.stack([b.velocity(xb) for b, xb in zip(self.blocks, self._split(x), strict=True)])
        return maps.gather(0, self.labels[None])[0]

    def rounded(self, x: Tensor) -> Tensor:
        """``x`` with every block's interfaces on row boundaries."""
        return torch.cat([b.rounded(xb) for b, xb in zip(self.blocks, self._split(x), strict=True)])


@dataclass
class Regions:
    """One velocity per region of a labelling, under a smooth warp: ``x = [velocities / VALUE_UNIT x weight (K),
    vertical displacements (g x g), horizontal displacements (g x g)]``, displacements in cells.

    With ``scaled``, a region's velocity parameter is multiplied by ``weight``, the square root of its size
    over the mean of those (else ``weight`` is 1): the misfit's gradient grows with a region's size, so
    unscaled, L-BFGS's first steps move the big layers and leave the small regions where the start put them.
    It pays on curved layers and not on faulted ones (see :mod:`fwi.physics.refine`).

    The region map ``c[labels]`` is resampled bilinearly at ``(z - u_z, x - u_x)``, ``u`` upsampled
    bicubically from the ``g x g`` control points. A blurred start puts interfaces up to a cell or two off;
    the warp moves every interface of a neighbourhood at once, smoothly in ``u`` (an interface between two
    cells blends them), so a handful of parameters, each as influential as a velocity, does what thousands
    of cell values would need thousands of iterations for. ``u`` starts at 0.
    """

    x0: Tensor
    labels: Tensor
    """``[nz, nx]`` long, values ``0..K-1``."""
    weight: Tensor
    """``[K]``: see above."""
    grid: int = WARP_GRID
    name: str = "regions"

    @classmethod
    def from_map(cls, v0: Tensor, labels: np.ndarray | Tensor | None = None, grid: int = WARP_GRID,
                 scaled: bool = True) -> Regions:
        """Regions of ``v0`` ``[nz, nx]`` (m/s) (:func:`~fwi.physics.segment.segment_regions` unless
        ``labels`` are given), each starting at the median of ``v0`` over it (robust to blurred edges);
        ``scaled``: see the class docstring."""
        if labels is None:
            labels = segment_regions(v0.double().cpu().numpy())
        lab = torch.as_tensor(labels, dtype=torch.long, device=v0.device)
        values = torch.stack([v0[lab == k].median() for k in range(int(lab.max()) + 1)])
        sizes = torch.bincount(lab.view(-1)).to(v0.dtype).sqrt()
        weight = sizes / sizes.mean() if scaled else torch.ones_like(sizes)
        return cls(torch.cat([values / VALUE_UNIT * weight, values.new_zeros(2 * grid * grid)]), lab, weight, grid)

    @property
    def n_regions(self) -> int:
        return self.weight.numel()

    def _sample(self, image: Tensor, x: Tensor, mode: str) -> Tensor:
        """``image`` ``[nz, nx]`` resampled at the positions displaced by ``x``'s warp."""
        k, g = self.n_regions, self.grid
        nz, nx = image.shape
        u = F.interpolate(x[k:].view(1, 2, g, g), size=(nz, nx), mode="bicubic", align_corners=True)[0]
        z = torch.arange(nz, dtype=x.dtype, device=x.device)[:, None] - u[0]
        xx = torch.arange(nx, dtype=x.dtype, device=x.device)[None, :] - u[1]
        where = torch.stack([2 * xx / (nx - 1) - 1, 2 * z / (nz - 1) - 1], dim=-1)[None]  # [1, nz, nx, (x, z)]
        return F.grid_sample(image[None, None], where, mode=mode, padding_mode="border", align_corners=True)[0, 0]

    def values(self, x: Tensor) -> Tensor:
        """The region velocities ``[K]`` (m/s) of ``x``."""
        return x[: self.n_regions] * VALUE_UNIT / self.weight

    def velocity(self, x: Tensor) -> Tensor:
        c = self.values(x)
        return self._sample(c[self.labels].to(x.dtype), x, "bilinear").clamp(VMIN, VMAX)

    def hardened(self, x: Tensor) -> Tensor:
        """The map of ``x`` with sharp interfaces: labels warped by nearest-cell sampling, ``[nz, nx]`` m/s."""
        labels = self._sample(self.labels.to(x.dtype), x.detach(), "nearest").round().long()
        return self.values(x.detach()).clamp(VMIN, VMAX)[labels]


@dataclass
class Smooth:
    """``base + VALUE_UNIT * bicubic(x.view(g, g))``: the start map plus a smooth correction (``x0 = 0``)."""

    x0: Tensor
    base: Tensor
    name: str = "smooth"

    @classmethod
    def from_map(cls, v0: Tensor, grid: int = SMOOTH_GRID) -> Smooth:
        return cls(v0.new_zeros(grid * grid), v0)

    def velocity(self, x: Tensor) -> Tensor:
        g = round(x.numel() ** 0.5)
        corr = F.interpolate(x.view(1, 1, g, g), size=tuple(self.base.shape), mode="bicubic", align_corners=True)
        return (self.base + VALUE_UNIT * corr[0, 0]).clamp(VMIN, VMAX)


Parametrization = Layers | Blocks | Regions | Smooth
