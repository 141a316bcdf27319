"""Which structure a predicted velocity map has, from the map alone, and the prior that fits it.

Four structures, told apart by two cheap features of the start map ``v0`` ``[nz, nx]`` (m/s):

- ``plateau``: the fraction of cells where the velocity gradient is under ``PLATEAU_GRADIENT`` m/s per cell.
  Layered maps are mostly plateaus between interfaces, smooth textures (Style) hardly anywhere.
- ``tilt``: among the cells with a strong velocity gradient (above half the 98th percentile), the fraction
  whose gradient is tilted from vertical (``|dv/dx| > 0.3 |grad v|``, ~17 degrees). Flat layers have none,
  faulted flat layers only along the fault, curved layers most.

Thresholds measured on network-like starts (:func:`fwi.physics.starts.network_like_start`, blur 1-1.5
cells, smooth error 20-30 m/s rms) of the 500 real maps per family in tests/data and of 100 ``fwi.synth``
maps per other family: plateau is at least 0.2 for all but 3 of the 3,000 real starts (CurveVel_A, blur 1.5)
and at most 0.22 (95th percentile 0.15) for synthetic Style A/B; tilt is 0 for every FlatVel map, 0.02-0.34
for 95 % of the FlatFault_A maps (the other 5 %: 0, a fault with no visible throw, refined as flat layers),
above 0.45 for 95-98 % of the CurveVel_A maps (the rest get the same prior as faulted maps anyway).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from fwi.physics.segment import segment_regions

Structure = Literal["flat", "faulted", "curved", "smooth"]
Prior = Literal["layers", "blocks", "regions", "smooth"]

PRIORS_OF: dict[str, tuple[Prior, ...]] = {"flat": ("layers",), "faulted": ("regions", "blocks"),
                                           "curved": ("regions",), "smooth": ("smooth",)}
"""The priors each structure is fitted under (see :mod:`fwi.physics.parametrize`); with two, the fit with
the lower data misfit wins (:func:`fwi.physics.refine.refine_map`)."""
PRIORS: tuple[str, ...] = ("layers", "blocks", "regions", "smooth")

PLATEAU_GRADIENT = 10.0
"""m/s per cell (Sobel estimate) under which a cell is part of a plateau."""
SMOOTH_PLATEAU = 0.2
"""Below this plateau fraction a map is a smooth texture."""
FLAT_TILT = 0.02
"""Below this tilt a map is flat-layered."""
FAULT_TILT = 0.45
"""Below this tilt a non-flat layered map is faulted flat layers, above it curved layers."""


def _gradient(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel estimates of ``(dv/dz, dv/dx)`` of ``v`` ``[nz, nx]``, m/s per cell."""
    return ndimage.sobel(v, axis=0, mode="nearest") / 8, ndimage.sobel(v, axis=1, mode="nearest") / 8


def plateau(v: np.ndarray) -> float:
    """Fraction of the cells of ``v`` ``[nz, nx]`` with a gradient under ``PLATEAU_GRADIENT`` (see module doc)."""
    gz, gx = _gradient(v)
    return float((np.hypot(gz, gx) < PLATEAU_GRADIENT).mean())


def tilt(v: np.ndarray) -> float:
    """Fraction of the strong-gradient cells of ``v`` ``[nz, nx]`` whose gradient is tilted (see module doc)."""
    gz, gx = _gradient(v)
    g = np.hypot(gz, gx)
    strong = g > 0.5 * np.percentile(g, 98)
    if not strong.any():  # a constant map: nothing is tilted
        return 0.0
    return float((np.abs(gx[strong]) > 0.3 * g[strong]).mean())


def classify(v: np.ndarray) -> tuple[Structure, np.ndarray]:
    """The structure of start map ``v`` ``[nz, nx]`` (m/s) and its region labels ``[nz, nx]`` (reused by the
    region prior, so the map is segmented once)."""
    v = np.asarray(v, dtype=np.float64)
    labels = segment_regions(v)
    if plateau(v) < SMOOTH_PLATEAU:
        return "smooth", labels
    t = tilt(v)
    if t < FLAT_TILT:
        return "flat", labels
    return ("faulted" if t < FAULT_TILT else "curved"), labels
