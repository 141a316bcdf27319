"""Acquisition constants of the competition data: the one place they live.

Every module that needs a grid size, time step, source position or the velocity range reads it from here,
so the simulator, the data checks, the synthetic generators and the metric can never disagree.
docs/physics.md says what each number means and where it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

VMIN = 1500.0
"""Lowest velocity in the competition data, m/s (predictions are clipped to it)."""
VMAX = 4500.0
"""Highest velocity in the competition data, m/s."""


def velocity_to_unit(velocity):
    """m/s -> the unit scale ``(v - VMIN) / (VMAX - VMIN)`` (0 at 1500, 1 at 4500 m/s); tensors or arrays."""
    return (velocity - VMIN) / (VMAX - VMIN)


def unit_to_velocity(unit):
    """The unit scale -> m/s, the inverse of :func:`velocity_to_unit`."""
    return VMIN + unit * (VMAX - VMIN)

NZ = 70
"""Velocity-map rows (depth), grid points."""
NX = 70
"""Velocity-map columns (horizontal), grid points."""
N_SOURCES = 5
"""Shots per sample."""
N_TIME = 1000
"""Recorded time samples per trace."""
N_RECEIVERS = 70
"""Receivers per shot."""

FAMILIES: tuple[str, ...] = (
    "FlatVel_A",
    "FlatVel_B",
    "CurveVel_A",
    "CurveVel_B",
    "FlatFault_A",
    "FlatFault_B",
    "CurveFault_A",
    "CurveFault_B",
    "Style_A",
    "Style_B",
)
"""The ten competition families, in the competition's order."""

SEISMIC_SHAPE = (N_SOURCES, N_TIME, N_RECEIVERS)
"""One sample's shot gathers: (source, time step, receiver)."""
VELOCITY_SHAPE = (1, NZ, NX)
"""One sample's velocity map as stored in the training files: (1, depth, x), m/s."""


@dataclass(frozen=True)
class Acquisition:
    """Geometry and discretisation of a survey; defaults reproduce the OpenFWI / Kaggle data exactly.

    Override fields with :func:`dataclasses.replace` (or :meth:`with_`), e.g. fewer time steps for fast
    tests or a sixth source at x=35 for exactly flip-symmetric surveys.
    """

    nz: int = NZ
    """Interior grid rows (depth), grid points."""
    nx: int = NX
    """Interior grid columns, grid points."""
    dx: float = 10.0
    """Grid spacing in x and z, m."""
    dt: float = 1e-3
    """Time step, s (one step per recorded sample, no sub-stepping)."""
    nt: int = N_TIME
    """Number of time steps = recorded samples."""
    nbc: int = 120
    """Width of the absorbing sponge on every side, grid points."""
    freq: float = 15.0
    """Peak frequency of the Ricker source wavelet, Hz."""
    source_x: tuple[int, ...] = (0, 17, 34, 52, 69)
    """Source columns, grid points (interior coordinates)."""
    source_z: int = 1
    """Source row, grid points (10 m deep)."""
    receiver_x: tuple[int, ...] = tuple(range(N_RECEIVERS))
    """Receiver columns, grid points."""
    receiver_z: int = 1
    """Receiver row, grid points."""
    zero_last_sample: bool = True
    """Zero the last recorded sample, as the organisers' data has it."""

    def with_(self, **changes) -> Acquisition:
        """A copy with some fields changed, e.g. ``DEFAULT.with_(nt=200)``."""
        return replace(self, **changes)

    @property
    def n_sources(self) -> int:
        return len(self.source_x)

    @property
    def n_receivers(self) -> int:
        return len(self.receiver_x)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(rows, columns) of the padded simulation grid, grid points."""
        return self.nz + 2 * self.nbc, self.nx + 2 * self.nbc

    def wavelet(self) -> np.ndarray:
        """OpenFWI's Ricker wavelet sampled on the ``nt`` steps, float64 ``[nt]``.

        ``nw = int(2.2 / f / dt)`` made odd (147 samples at 15 Hz, 1 ms), centre ``nc = nw // 2 + 1``
        (1-based), ``w[k-1] = (1 - 2b) exp(-b)`` with ``b = ((nc - k) f dt pi)^2``; zero after ``nw``.
        """
        nw = int(2.2 / self.freq / self.dt)
        nw = 2 * (nw // 2) + 1
        nc = nw // 2 + 1
        k = np.arange(1, nw + 1, dtype=np.float64)
        b = ((nc - k) * self.freq * self.dt * math.pi) ** 2
        w = (1.0 - 2.0 * b) * np.exp(-b)
        out = np.zeros(self.nt, dtype=np.float64)
        n = min(nw, self.nt)
        out[:n] = w[:n]
        return out

    def damping(self, vmin: float) -> np.ndarray:
        """Sponge damping profile ``kappa`` (1/s) on the padded grid, float64 ``[nz+2nbc, nx+2nbc]``.

        ``kappa0 = 3 vmin ln(1e7) / (2a)`` with ``a = (nbc - 1) dx``; at distance index ``i = 0..nbc-1``
        outward from the interior edge the damping is ``kappa0 (i dx / a)^2``. Left/right strips span all
        rows; top/bottom strips span the interior columns only (the organisers' convention). ``vmin`` is
        the sample's own minimum velocity, m/s.
        """
        nbc, dx = self.nbc, self.dx
        a = (nbc - 1) * dx
        kappa0 = 3.0 * vmin * math.log(1e7) / (2.0 * a)
        profile = kappa0 * (np.arange(nbc) * dx / a) ** 2  # i = 0 next to the interior
        rows, cols = self.padded_shape
        d = np.zeros((rows, cols), dtype=np.float64)
        d[:, :nbc] = profile[::-1]
        d[:, nbc + self.nx :] = profile
        d[:nbc, nbc : nbc + self.nx] = profile[::-1, None]
        d[nbc + self.nz :, nbc : nbc + self.nx] = profile[:, None]
        return d


DEFAULT = Acquisition()
"""The competition's acquisition."""
