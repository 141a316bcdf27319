"""Seeded, vectorised generators of OpenFWI-like velocity maps for the ten competition families.

``generate(family, n, seed, device) -> [n, 70, 70]`` float32, m/s, in ``[VMIN, VMAX]``. Everything is drawn from
one ``torch.Generator`` seeded with ``seed`` on ``device``, in chunks of :data:`CHUNK` maps, so a call is
reproducible on the same device and torch version (CPU and CUDA streams differ; ``generate(f, 10, s)`` is not
the head of ``generate(f, 20, s)``).

How each family is built (numbers measured on 500 real maps of FlatVel_A, CurveVel_A and FlatFault_A; the other
families have no reference here and follow the descriptions in docs/data.md):

- **FlatVel** — horizontal layers. A: 3-8 layers, interfaces ``j * 70/(k - 0.5)`` plus jitter (the last layer
  is the thin one), velocities the lowest ``k`` of a few sorted uniform draws (increase with depth), integers.
  B: 3-10 layers of random thickness, velocities independent (no ordering, big contrasts).
- **CurveVel** — the same layers with equal thickness ``70/(N-1)``, all shifted by one smooth curve (a sum of two
  sines of 0.5-3.5 cycles per map, std ~0.36 layer thickness) plus a small per-interface wobble; layers that the
  curve pushes out of the window let the next ones in. Pixelated boundaries, integer values. B: rougher and
  larger curves, unordered velocities.
- **FlatFault / CurveFault** — A: 4 layers ~17.5 rows thick, two velocities below and two above 3000 m/s
  (as measured), then one fault (or, 20 %, a fault block bounded by two opposite faults) with a vertical throw
  of 5-10 rows and a dip of 45-88 deg, a thin drag zone with a faint velocity streak along the fault plane, and
  a light Gaussian blur (sigma 0.43 px: the real 5 % / 95 % transition rows at every interface). CurveFault
  adds a CurveVel-like bend. B: 4-8 unordered layers, up to two faults with 5-20 row throws; the real
  CurveFault sample we have is unsmoothed with integer values, so CurveFault_B is left unsmoothed.
- **Style** — A: smooth anisotropic Gaussian random field (correlation 3-8 px) on a velocity increasing with
  depth. B: rough power-law field, larger contrasts, weaker and unordered depth trend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from fwi.physics.acquisition import FAMILIES, NX, NZ, VMAX, VMIN

CHUNK = 1024
"""Maps generated per vectorised step (bounds peak memory to a few hundred MB)."""

_INF = float("inf")


def generate(family: str, n: int, seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """``n`` synthetic velocity maps of ``family``: float32 ``[n, NZ, NX]`` (depth, x), m/s in ``[VMIN, VMAX]``.

    Same ``(family, n, seed, device)`` gives the same maps; different seeds give different maps.
    Raises ``ValueError`` for an unknown family (the message lists the valid ones) or a negative ``n``.
    """
    if family not in _GENERATORS:
        raise ValueError(f"unknown velocity family {family!r}; valid families: {', '.join(FAMILIES)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    device = torch.device(device)
    if n == 0:
        return torch.empty(0, NZ, NX, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    chunks = [_GENERATORS[family](g, min(CHUNK, n - start)) for start in range(0, n, CHUNK)]
    return torch.cat(chunks).float().clamp_(VMIN, VMAX)


# ----------------------------------------------------------------------------------------------- random draws


def _u(g: torch.Generator, shape: Sequence[int], lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Uniform draws in ``[lo, hi)``, float32 ``shape`` on the generator's device."""
    return lo + (hi - lo) * torch.rand(tuple(shape), generator=g, device=g.device)


def _normal(g: torch.Generator, shape: Sequence[int], std: float = 1.0) -> torch.Tensor:
    return std * torch.randn(tuple(shape), generator=g, device=g.device)


def _choice(g: torch.Generator, n: int, values: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """``n`` draws (int64 ``[n]``) from ``values`` with relative ``weights``."""
    w = torch.tensor(weights, dtype=torch.float32, device=g.device)
    idx = torch.multinomial(w, n, replacement=True, generator=g)
    return torch.tensor(values, device=g.device)[idx]


def _sign(g: torch.Generator, shape: Sequence[int]) -> torch.Tensor:
    return torch.where(_u(g, shape) < 0.5, -1.0, 1.0)


# ------------------------------------------------------------------------------------------- building blocks


def _sorted_velocities(g: torch.Generator, count: torch.Tensor, layers: int) -> torch.Tensor:
    """The lowest ``layers`` of ``count[i]`` uniform draws in [VMIN, VMAX], ascending, rounded: ``[n, layers]``.

    Taking the lowest ``k`` of ``k + 1`` draws (``count = k + 1``) lowers the deepest layers, as measured on
    FlatVel_A maps with few layers. Slots beyond ``count`` are ``inf`` (never looked up).
    """
    width = max(layers, int(count.max()))
    u = _u(g, (count.shape[0], width), VMIN, VMAX)
    u = torch.where(torch.arange(width, device=g.device) < count[:, None], u, _INF)
    return u.sort(dim=1).values[:, :layers].round()


def _random_velocities(g: torch.Generator, n: int, layers: int, lo: float = VMIN, hi: float = VMAX) -> torch.Tensor:
    """Independent uniform layer velocities (no ordering), rounded: ``[n, layers]`` m/s."""
    return _u(g, (n, layers), lo, hi).round()


def _random_interfaces(g: torch.Generator, k: torch.Tensor, max_layers: int) -> torch.Tensor:
    """Interface rows of ``k[i]`` layers of random thickness (0.3-1.7x the mean) filling the map.

    Returns float ``[n, max_layers - 1]``, ascending, ``inf`` where a sample has fewer interfaces.
    """
    n = k.shape[0]
    thick = _u(g, (n, max_layers), 0.3, 1.7)
    thick = torch.where(torch.arange(max_layers, device=g.device) < k[:, None], thick, 0.0)
    edges = thick.cumsum(1) / thick.sum(1, keepdim=True) * NZ  # bottom of each layer, last = NZ
    edges = edges[:, :-1].round().clamp_min(1.0)
    return torch.where(torch.arange(1, max_layers, device=g.device) < k[:, None], edges, _INF)


def _curves(g: torch.Generator, shape: Sequence[int], x: torch.Tensor, fmax: float, fmin: float = 0.5) -> torch.Tensor:
    """Smooth random curves with zero mean and unit std over ``x``: ``[*shape, len(x)]``.

    Each is a sum of two sines of ``fmin``-``fmax`` cycles per map width with random amplitude and phase.
    ``x`` holds column coordinates in pixels.
    """
    shape = (*shape, 2, 1)
    freq = _u(g, shape, fmin, fmax)
    amp = _u(g, shape, 0.2, 1.0)
    phase = _u(g, shape, 0.0, 2 * math.pi)
    c = (amp * torch.sin(2 * math.pi * freq * x / NX + phase)).sum(-2)
    c = c - c.mean(-1, keepdim=True)
    return c / c.std(-1, keepdim=True).clamp_min(1e-3)


def _lookup(depth: torch.Tensor, interfaces: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """Velocity of a layer stack at (source) depths.

    depth: ``[n, H, W]`` rows (pixel centres at integers); interfaces: ``[n, L-1, W]`` or ``[n, L-1, 1]`` row of
    the first pixel of each deeper layer (``inf`` = absent); velocity: ``[n, L]`` m/s. A point lies in layer
    ``i`` = number of interfaces at or above it (a point at ``depth`` covers ``[depth - 0.5, depth + 0.5)``).
    Returns ``[n, H, W]`` m/s.
    """
    top = depth + 0.5
    idx = torch.zeros(depth.shape, dtype=torch.uint8, device=depth.device)
    for j in range(interfaces.shape[1]):
        idx += top >= interfaces[:, j, None, :]
    return torch.gather(velocity, 1, idx.flatten(1).long()).view(depth.shape)


def _gaussian_blur(maps: torch.Tensor, sigma: float, radius: int = 2) -> torch.Tensor:
    """Separable Gaussian blur of ``[n, H, W]`` maps with edge replication; ``sigma`` in pixels.

    Written as ``x + sum_i k_i (x_i - x)`` (shifted sums, much faster than ``conv2d`` on CPU) so that constant
    regions keep their exact (integer) values.
    """
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).tolist()
    h, w = maps.shape[-2:]
    x = F.pad(maps[:, None], (0, 0, radius, radius), mode="replicate")[:, 0]
    maps = maps + sum(k[i] * (x[:, i : i + h, :] - maps) for i in range(len(k)) if i != radius)
    x = F.pad(maps[:, None], (radius, radius, 0, 0), mode="replicate")[:, 0]
    return maps + sum(k[i] * (x[:, :, i : i + w] - maps) for i in range(len(k)) if i != radius)


def _grf(g: torch.Generator, amplitude: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n: int) -> torch.Tensor:
    """Gaussian random fields ``[n, NZ, NX]``, zero mean and unit std per map.

    ``amplitude(kz, kx)`` maps wavenumbers (cycles/pixel, ``[1, S, S//2+1]``) to spectral amplitudes
    ``[n, S, S//2+1]``; white noise on a 128 x 128 grid is filtered and cropped (no periodic wrap-around).
    """
    size = 128
    noise = _normal(g, (n, size, size))
    kz = torch.fft.fftfreq(size, device=g.device).view(1, size, 1)
    kx = torch.fft.rfftfreq(size, device=g.device).view(1, 1, size // 2 + 1)
    field = torch.fft.irfft2(torch.fft.rfft2(noise) * amplitude(kz, kx), s=(size, size))[:, :NZ, :NX]
    field = field - field.mean((1, 2), keepdim=True)
    return field / field.std((1, 2), keepdim=True).clamp_min(1e-6)


def _col(v: torch.Tensor) -> torch.Tensor:
    """``[n]`` -> ``[n, 1]`` (per-sample parameters broadcast over a trailing axis)."""
    return v[:, None]


# -------------------------------------------------------------------------------------------------- families

# FlatVel_A: distinct-value counts (= layers) 3..8 of 500 real maps: 52, 92, 106, 96, 113, 41.
_FLAT_A_LAYERS = (3, 4, 5, 6, 7, 8)
_FLAT_A_WEIGHTS = (52, 92, 106, 96, 113, 41)
# Mean number of extra, discarded velocity draws per layer count (fitted to the real per-layer mean velocities):
# the layers are the lowest k of k + extra sorted uniform draws, which slows the deepest layers.
_FLAT_A_EXTRA = {3: 1.5, 4: 0.45, 5: 0.4, 6: 0.65, 7: 0.65, 8: 0.0}


def _flatvel(g: torch.Generator, n: int, hard: bool) -> torch.Tensor:
    """Horizontal layers, constant rows: ``[n, NZ, NX]`` m/s."""
    if not hard:
        lmax = max(_FLAT_A_LAYERS)
        k = _choice(g, n, _FLAT_A_LAYERS, _FLAT_A_WEIGHTS)
        spacing = _col(NZ / (k - 0.5))  # measured: interfaces at ~j * 70/(k - 0.5), std ~0.17 spacing
        j = torch.arange(1, lmax, device=g.device)
        rows = (j * spacing + _normal(g, (n, lmax - 1)) * 0.17 * spacing).round().clamp_min(1.0)
        interfaces = torch.where(j < _col(k), rows, _INF).sort(1).values
        extra = torch.tensor([_FLAT_A_EXTRA.get(i, 0.0) for i in range(lmax + 1)], device=g.device)[k]
        extra = extra.floor() + (_u(g, (n,)) < extra - extra.floor()).float()
        velocity = _sorted_velocities(g, k + extra.long(), lmax)
    else:
        lmax = 10
        k = _choice(g, n, range(3, lmax + 1), [1.0] * (lmax - 2))
        interfaces = _random_interfaces(g, k, lmax)
        velocity = _random_velocities(g, n, lmax)
    depth = torch.arange(NZ, dtype=torch.float32, device=g.device).view(1, NZ, 1).expand(n, NZ, 1)
    return _lookup(depth, interfaces[:, :, None], velocity).expand(n, NZ, NX).contiguous()


# CurveVel_A: distinct values per map 3..8 of 500 real maps: 1, 110, 84, 91, 124, 90.
_CURVE_A_LAYERS = (3, 4, 5, 6, 7, 8)
_CURVE_A_WEIGHTS = (1, 110, 84, 91, 124, 90)


def _curved_interfaces(
    g: torch.Generator,
    base: torch.Tensor,
    thickness: torch.Tensor,
    x: torch.Tensor,
    bend: float,
    fmax: float,
    wobble: float,
) -> torch.Tensor:
    """Bend flat interfaces ``base [n, L-1]`` (rows) by a shared curve: ``[n, L-1, len(x)]`` rows.

    The shared shift is ``s * thickness * curve(x)`` with ``s`` log-normal around ``bend`` (real CurveVel_A:
    median 0.36, 5-95 % 0.19-0.70); each interface also wobbles by its own curve of std ~``wobble`` rows.
    """
    n, m = base.shape
    scale = bend * torch.exp(_normal(g, (n, 1), 0.4)) * _col(thickness)
    shift = scale * _curves(g, (n,), x, fmax)  # [n, W]
    own = _normal(g, (n, m, 1), wobble) * _curves(g, (n, m), x, fmax)  # [n, L-1, W]
    return base[:, :, None] + shift[:, None, :] + own


def _curvevel(g: torch.Generator, n: int, hard: bool) -> torch.Tensor:
    """Layers of equal thickness bent by a smooth curve: ``[n, NZ, NX]`` m/s."""
    lmax = 8 if not hard else 10
    if not hard:
        layers = _choice(g, n, _CURVE_A_LAYERS, _CURVE_A_WEIGHTS)
        velocity = _sorted_velocities(g, layers, lmax)
        bend, fmax, wobble = 0.36, 3.5, 1.0
    else:
        layers = _choice(g, n, range(3, lmax + 1), [1.0] * (lmax - 2))
        velocity = _random_velocities(g, n, lmax)
        bend, fmax, wobble = 0.5, 4.0, 1.5
    # measured on CurveVel_A: thickness = 70/(N-1) for N visible layers, first interface at ~1 thickness +- 2.3
    thickness = NZ / (layers - 1) * (1 + _normal(g, (n,), 0.03))
    j = torch.arange(1, lmax, device=g.device)
    base = j * _col(thickness) + _normal(g, (n, 1), 2.3)
    base = torch.where(j < _col(layers), base, _INF)
    x = torch.arange(NX, dtype=torch.float32, device=g.device)
    interfaces = _curved_interfaces(g, base, thickness, x, bend, fmax, wobble)
    depth = torch.arange(NZ, dtype=torch.float32, device=g.device).view(1, NZ, 1).expand(n, NZ, NX)
    return _lookup(depth, interfaces, velocity)


_FAULT_BLUR = 0.43
"""Gaussian blur of A fault maps, pixels: gives the real 5 % / 95 % rows at each interface."""


def _faults(
    g: torch.Generator, n: int, xs: torch.Tensor, zs: torch.Tensor, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical displacement (rows) and fault-plane streak (relative velocity change) of one or two faults.

    Both ``[n, len(zs), len(xs)]`` on the pixel grid ``xs``, ``zs`` (pixel coordinates).

    A fault passes through column ``x0`` at mid-depth with dip ``theta`` (from horizontal) towards ``+-x``;
    everything on one side (either) moves down or up by an integer throw. The displacement ramps across a thin drag
    zone (``drag`` px wide). Real fault planes show a faint streak (~1 % velocity change along the plane); the
    streak map is ``eps * 4 u (1 - u)`` for the ramp ``u`` of each fault; ``eps ~ N(0, 1.5 %)``.
    With probability ``p_block`` two faults of opposite dip bound a block (graben/horst) that moves instead.
    A: 1 fault or a block, throws 5-10 rows, dips 45-88 deg (as seen in FlatFault_A).
    B: up to two independent faults or a block, throws 5-20 rows, dips 30-88 deg.
    """
    tmax, dip_lo, p_two, p_block = (10.0, 45.0, 0.0, 0.2) if not hard else (20.0, 30.0, 0.4, 0.25)
    X, Z = xs.view(1, 1, -1), zs.view(1, -1, 1)
    dip = torch.deg2rad(_u(g, (n, 2), dip_lo, 88.0))
    lean = _sign(g, (n, 1))
    lean = torch.cat([lean, torch.where(_u(g, (n, 1)) < 0.5, lean, -lean)], 1)  # second fault: any direction
    x0 = _u(g, (n, 2), 12.0, NX - 12.0)
    throw = _sign(g, (n, 2)) * _u(g, (n, 2), 5.0, tmax + 1.0).floor()
    drag = _u(g, (n, 2), 0.5, 2.0)
    block = _u(g, (n,)) < p_block
    two = (_u(g, (n,)) < p_two) & ~block
    # block: first fault on the left, second at 12-40 px to its right leaning the other way
    x0_block = _u(g, (n,), 5.0, NX - 30.0)
    x0 = torch.where(block[:, None], torch.stack([x0_block, x0_block + _u(g, (n,), 12.0, 40.0)], 1), x0)
    lean = torch.where(block[:, None], torch.cat([lean[:, :1], -lean[:, :1]], 1), lean)

    def side(f: int) -> torch.Tensor:  # [n, H, W] in [0, 1]: 1 right of fault f, ramping across the drag zone
        p = [v[:, f].view(n, 1, 1) for v in (x0, lean, dip, drag)]
        x_fault = p[0] + p[1] * (Z - NZ / 2) / torch.tan(p[2])
        return (0.5 + (X - x_fault) * torch.sin(p[2]) / p[3]).clamp_(0.0, 1.0)

    right0, right1 = side(0), side(1)
    has1 = (block | two).view(n, 1, 1).float()
    moved0 = right0 * (1.0 - right1 * block.view(n, 1, 1).float())  # a block ends at the second fault
    moved1 = right1 * two.view(n, 1, 1).float()
    # either side may be the one that moves (real maps: the left edge is displaced as often as the right)
    other = (_u(g, (n, 2, 1, 1)) < 0.5).float()
    moved0 = moved0 + other[:, 0] * (1.0 - 2.0 * moved0)
    moved1 = moved1 + other[:, 1] * (two.view(n, 1, 1).float() - 2.0 * moved1)
    shift = throw[:, 0].view(n, 1, 1) * moved0 + throw[:, 1].view(n, 1, 1) * moved1
    eps = _normal(g, (n, 2), 0.015)
    eps0, eps1 = eps[:, 0].view(n, 1, 1), eps[:, 1].view(n, 1, 1) * has1
    streak = eps0 * 4 * right0 * (1 - right0) + eps1 * 4 * right1 * (1 - right1)
    return shift, streak


def _fault(g: torch.Generator, n: int, hard: bool, curved: bool) -> torch.Tensor:
    """Flat or curved layers cut by dipping faults: ``[n, NZ, NX]`` m/s."""
    xs = torch.arange(NX, dtype=torch.float32, device=g.device)
    zs = torch.arange(NZ, dtype=torch.float32, device=g.device)
    if not hard:
        # FlatFault_A: 4 layers; interfaces at ~j * 17.5 rows; v1 < v2 in [1500, 3000), v3 < v4 in [3000, 4500)
        lmax = 4
        layers = torch.full((n,), lmax, device=g.device)
        j = torch.arange(1, lmax, device=g.device)
        base = (j * NZ / lmax - 0.3 + _normal(g, (n, lmax - 1), 1.5)).round()
        mid = 0.5 * (VMIN + VMAX)
        velocity = torch.cat([_u(g, (n, 2), VMIN, mid).sort(1).values, _u(g, (n, 2), mid, VMAX).sort(1).values], 1)
        velocity = velocity.round()
        bend = 0.25
    else:
        lmax = 8
        layers = _choice(g, n, range(4, lmax + 1), [1.0] * (lmax - 3))
        base = _random_interfaces(g, layers, lmax)
        velocity = _random_velocities(g, n, lmax)
        bend = 0.4
    if curved:
        thickness = NZ / layers.float()
        interfaces = _curved_interfaces(g, base, thickness, xs, bend, 3.5, 1.0)
    else:
        interfaces = base[:, :, None]
    shift, streak = _faults(g, n, xs, zs, hard)
    maps = _lookup(zs.view(1, -1, 1) - shift, interfaces, velocity) * (1.0 + streak)
    if hard and curved:  # the real CurveFault sample we have is unsmoothed, integer-valued
        return maps.round()
    # 3 taps give the 5 % / 95 % rows; 5 taps add the sub-0.1 m/s residues that half the real maps show
    wide = (_u(g, (n, 1, 1)) < 0.5).expand(n, NZ, NX)
    return torch.where(wide, _gaussian_blur(maps, _FAULT_BLUR, radius=2), _gaussian_blur(maps, _FAULT_BLUR, radius=1))


def _style(g: torch.Generator, n: int, hard: bool) -> torch.Tensor:
    """Smooth (A) or rough (B) textures on a depth trend: ``[n, NZ, NX]`` m/s."""
    z = torch.linspace(0.0, 1.0, NZ, device=g.device).view(1, NZ, 1)
    if not hard:
        corr = _u(g, (n, 1, 1), 3.0, 8.0)  # correlation length, px (z); x is 1-2x longer
        stretch = _u(g, (n, 1, 1), 1.0, 2.0)

        def amplitude(kz: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
            k2 = kz**2 + (kx * stretch) ** 2
            return torch.exp(-((2 * math.pi * corr) ** 2) * k2 / 4)

        top = _u(g, (n, 1, 1), VMIN, 3000.0)
        bottom = (top + _u(g, (n, 1, 1), 500.0, 1800.0)).clamp_max(VMAX - 200.0)
        sigma = _u(g, (n, 1, 1), 150.0, 450.0)
    else:
        beta = _u(g, (n, 1, 1), 3.0, 4.0)  # power-law exponent of the spectrum: lower = rougher
        stretch = _u(g, (n, 1, 1), 0.7, 2.5)

        def amplitude(kz: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
            k2 = kz**2 + (kx * stretch) ** 2 + (1.0 / NX) ** 2
            return k2 ** (-beta / 4)

        top = _u(g, (n, 1, 1), VMIN, 3500.0)
        bottom = _u(g, (n, 1, 1), VMIN + 500.0, VMAX)
        sigma = _u(g, (n, 1, 1), 300.0, 800.0)
    trend = top + (bottom - top) * z
    return (trend + sigma * _grf(g, amplitude, n)).clamp(VMIN, VMAX)


_GENERATORS: dict[str, Callable[[torch.Generator, int], torch.Tensor]] = {
    "FlatVel_A": lambda g, n: _flatvel(g, n, hard=False),
    "FlatVel_B": lambda g, n: _flatvel(g, n, hard=True),
    "CurveVel_A": lambda g, n: _curvevel(g, n, hard=False),
    "CurveVel_B": lambda g, n: _curvevel(g, n, hard=True),
    "FlatFault_A": lambda g, n: _fault(g, n, hard=False, curved=False),
    "FlatFault_B": lambda g, n: _fault(g, n, hard=True, curved=False),
    "CurveFault_A": lambda g, n: _fault(g, n, hard=False, curved=True),
    "CurveFault_B": lambda g, n: _fault(g, n, hard=True, curved=True),
    "Style_A": lambda g, n: _style(g, n, hard=False),
    "Style_B": lambda g, n: _style(g, n, hard=True),
}
assert tuple(_GENERATORS) == FAMILIES
