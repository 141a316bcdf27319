"""Seeded, vectorised generators of OpenFWI-like velocity maps for the ten competition families.

``generate(family, n, seed, device) -> [n, 70, 70]`` float32, m/s, in ``[VMIN, VMAX]``. Everything is drawn from
one ``torch.Generator`` seeded with ``seed`` on ``device``, in chunks of :data:`CHUNK` maps, so a call is
reproducible on the same device and torch version (CPU and CUDA streams differ; ``generate(f, 10, s)`` is not
the head of ``generate(f, 20, s)``).

How each family is built (measured on real OpenFWI maps of FlatVel_A, CurveVel_A and FlatFault_A; the other
families carry the same geometry with the "harder" settings of the B twins; ``benchmarks/realism.py`` checks
them against real maps):

- **FlatVel** -- evenly spaced horizontal layers (:func:`_even_layers`). A: 3-7 interfaces ``70/m`` rows apart
  (about +-0.6 row per interface), velocities sorted (increase with depth), integers. B: up to 9 interfaces,
  thickness jitter, unordered velocities.
- **CurveVel** -- A: 4-8 layers ``70/(k-1)`` rows apart, bent by quadratic-spline curves through control depths
  every 10 columns (:func:`curve_basis`, :func:`_curve_shifts`: a shared curve whose swing is proportional to the
  spacing and grows to the right, plus a small curve of each interface's own), as the real interfaces are.
  Pixel-sharp, integer values. B: more layers, larger swings, unordered velocities.
- **FlatFault / CurveFault** -- A: 4 layers ~17.5 rows thick, two velocities below and two above 3000 m/s,
  one or (more often) two mostly steep faults anywhere across the map (blocks, faults dying out inside the map,
  fault-plane smear), throws of 4.5-11 rows, then resampled as the real maps are (edges smoothed on a half-row
  grid, a 0.54 % stretch, the two outermost columns often left unresampled). CurveFault bends the layers first.
  B: 4-8 unordered layers, larger throws; CurveFault_B is pixel-sharp and integer-valued like the real CurveFault
  sample.
- **Style** -- A: smooth anisotropic Gaussian random field (correlation 3-8 px) on a velocity increasing with
  depth. B: rough power-law field, larger contrasts, weaker and unordered depth trend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

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

def _even_layers(g: torch.Generator, n: int, m_max: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evenly spaced interfaces as in FlatVel_A: rows ``[n, m_max]`` (``inf`` = absent), spacing ``[n]``.

    Measured on the real maps: a map holds ``m`` ~ U{3..``m_max``} interfaces spaced ``d = 70/m`` rows (+-2.5 %,
    the same spacing for every layer, each interface off by ``U(+-0.6)`` rows: inner-layer thicknesses of a map
    differ by 0 / 1 / 2 / 3 rows in 12 / 42 / 43 / 3 % of the maps), the first at ``d * U(0.5, 1.5)``. The
    last interface lands below the window about half of the time (then ``m`` layers show, else ``m + 1``).
    Also returns ``m`` (int64 ``[n]``).
    """
    m = torch.randint(3, m_max + 1, (n,), generator=g, device=g.device)
    spacing = NZ / m * (1 + _normal(g, (n,), 0.025)).clamp(0.93, 1.07)
    first = spacing * _u(g, (n,), 0.5, 1.5)
    i = torch.arange(m_max, device=g.device)
    rows = _col(first) + i * _col(spacing) + _u(g, (n, m_max), -0.6, 0.6)
    return torch.where(i < _col(m), rows, _INF), spacing, m


def _flatvel(g: torch.Generator, n: int, hard: bool) -> torch.Tensor:
    """Horizontal layers, constant rows: ``[n, NZ, NX]`` m/s.

    A: :func:`_even_layers` with the ``m + 1`` sorted velocities of :func:`_sorted_velocities` (the lowest ``k``
    show when ``k`` layers are visible, as measured: the per-layer mean velocities match the order statistics of
    ``m + 1`` uniform draws). B: the same geometry with up to 9 interfaces, thickness jitter and unordered
    velocities.
    """
    if not hard:
        interfaces, _, m = _even_layers(g, n)
        velocity = _sorted_velocities(g, m + 1, interfaces.shape[1] + 1)
    else:
        interfaces, spacing, m = _even_layers(g, n, m_max=9)
        interfaces = interfaces + _normal(g, interfaces.shape, 0.12) * _col(spacing)
        velocity = _random_velocities(g, n, interfaces.shape[1] + 1)
    depth = torch.arange(NZ, dtype=torch.float32, device=g.device).view(1, NZ, 1).expand(n, NZ, 1)
    return _lookup(depth, interfaces[:, :, None], velocity).expand(n, NZ, NX).contiguous()


CURVE_COLUMNS = tuple(5.0 + 10.0 * i for i in range(8))
"""Columns (pixels, the last beyond the map) of the control depths that bend CurveVel / CurveFault interfaces."""

_CURVE_KNOTS = (20.0, 30.0, 40.0, 50.0, 60.0)


def curve_basis(x: torch.Tensor) -> torch.Tensor:
    """Interpolation weights ``[len(x), 8]`` of the quadratic spline through control depths at :data:`CURVE_COLUMNS`.

    ``curve_basis(x) @ controls`` is the curve at columns ``x`` (pixels): the interpolating quadratic spline with
    knots at columns 20, 30, ..., 60. Real CurveVel_A interfaces are exactly such splines: they span an 8-dim
    space (a PCA of 3000 real curves leaves only pixel rounding outside it), their second derivative is constant
    between those columns, and their extrema sit near the control columns. Float64 on ``x``'s device.
    """

    def powers(t: torch.Tensor) -> torch.Tensor:  # truncated power basis of the spline space, [len(t), 8]
        return torch.stack([t**0, t, t**2] + [(t - k).clamp_min(0) ** 2 for k in _CURVE_KNOTS], 1)

    c = torch.tensor(CURVE_COLUMNS, dtype=torch.float64, device=x.device)
    return powers(x.double()) @ torch.linalg.inv(powers(c))


_CURVE_CHOL = (
    (0.253, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (0.169, 0.193, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (-0.148, 0.158, 0.296, 0.0, 0.0, 0.0, 0.0, 0.0),
    (0.148, -0.112, -0.122, 0.417, 0.0, 0.0, 0.0, 0.0),
    (-0.145, 0.098, 0.158, -0.266, 0.438, 0.0, 0.0, 0.0),
    (0.153, -0.093, -0.145, 0.305, -0.294, 0.44, 0.0, 0.0),
    (-0.21, 0.137, 0.236, -0.418, 0.449, -0.425, 0.574, 0.0),
    (-0.119, 0.071, 0.114, -0.209, 0.244, -0.229, 0.27, 0.28),
)
"""Cholesky factor of the covariance of the control depths at :data:`CURVE_COLUMNS`, in layer spacings, fitted
on 3000 real CurveVel_A maps (``benchmarks/curve_stats.py`` on OpenFWI's CurveVelA training files 1-6): the swing
grows to the right (std 0.25 spacing at column 5, 1.0 at column 65) and neighbouring controls alternate
(correlation -0.6 to -0.8 on the right): folds that tighten and swing harder towards one side."""


def _curve_shifts(g: torch.Generator, n: int, count: int, scale: torch.Tensor, own: float) -> torch.Tensor:
    """Vertical shifts (rows) of ``count`` interfaces per map: ``[n, count, NX]``.

    One shared curve (control depths ~ N(0, :data:`_CURVE_CHOL` covariance) times ``scale`` ``[n]`` rows) plus a
    small curve of each interface's own (the same law times ``own`` rows, not scaled: real neighbouring CurveVel_A
    interfaces differ by ~1 row whatever their spacing), both interpolated by :func:`curve_basis`.
    """
    chol = torch.tensor(_CURVE_CHOL, device=g.device)
    basis = curve_basis(torch.arange(NX, device=g.device)).float()
    shared = (_normal(g, (n, 1, 8)) @ chol.T) * scale.view(n, 1, 1)
    mine = (_normal(g, (n, count, 8)) @ chol.T) * own
    return (shared + mine) @ basis.T


def _curvevel(g: torch.Generator, n: int, hard: bool) -> torch.Tensor:
    """Evenly spaced layers bent by spline curves: ``[n, NZ, NX]`` m/s.

    A, as measured on real CurveVel_A maps: ``k`` ~ U{4..8} layers, interfaces at ``j * d`` (``d = 70 / (k - 1)``
    rows, ``j = 1..k-1``: the last one at the bottom edge, so the deepest layer only shows where the curves rise),
    ``k`` sorted uniform velocities, every interface shifted by :func:`_curve_shifts` with a shared swing of
    ``d`` (the real swing is proportional to the spacing) and an own swing of 1.4 rows. B: up to 10 layers,
    uneven spacing, unordered velocities, swings 1.5 times larger and rougher.
    """
    k_max = 8 if not hard else 10
    k = torch.randint(4, k_max + 1, (n,), generator=g, device=g.device)
    spacing = NZ / (k - 1).float()
    j = torch.arange(1, k_max, device=g.device, dtype=torch.float32)
    rows = j * _col(spacing)
    if not hard:
        velocity = _sorted_velocities(g, k, k_max)
        shifts = _curve_shifts(g, n, k_max - 1, spacing, own=1.4)
    else:
        rows = rows + _normal(g, rows.shape, 0.12) * _col(spacing)
        velocity = _random_velocities(g, n, k_max)
        shifts = _curve_shifts(g, n, k_max - 1, 1.5 * spacing, own=2.8)
    interfaces = torch.where(j < _col(k), rows, _INF)[:, :, None] + shifts
    depth = torch.arange(NZ, dtype=torch.float32, device=g.device).view(1, NZ, 1).expand(n, NZ, NX)
    return _lookup(depth, interfaces, velocity)


_EDGE_TAP = 0.0535
"""Outer weight of the 3-tap vertical smoothing (``a, 1 - 2a, a``) seen on real FlatFault_A layers: a layer edge
on a pixel boundary shows 5.35 % and 94.65 % of the step in the two rows beside it, in every map."""

_EDGE_TAIL = 1.3e-4
"""The smoothing's far tail: a boundary moved by ``s`` rows off a pixel edge leaves ``2.6e-4 s`` of the step two
rows away (real values such as 1878.00024 next to 1878), so most real pixels near interfaces are not integers."""

_WARP_STRETCH = 0.0054
"""Real FlatFault_A maps are resampled after faulting: away from the edge columns an interface at boundary row ``p``
shows at ``p * (1 - 0.0054)`` (16 -> 15.91, 32 -> 31.83, 55 -> 54.70 in every map), the two outermost columns
often keep the unresampled layers."""


def _edge_profile(t: torch.Tensor) -> torch.Tensor:
    """Share of a layer step seen at a pixel centre ``t`` rows below the layer boundary (``[0, 1]``, any shape).

    Real FlatFault_A edges are a smoothed step sampled every half row and interpolated linearly: 0, ``e``, ``a``,
    1/2, ``1 - a``, ``1 - e``, 1 at ``t`` = -3/2, -1, ..., 3/2 (``a`` = :data:`_EDGE_TAP`, ``e`` =
    :data:`_EDGE_TAIL`). This reproduces the measured pairs of the two rows beside a moved boundary: ``a`` /
    ``1 - a`` on a pixel edge, 0 / 1/2 on a pixel centre, and the lower row rising 0.12 per unit of the upper one
    (then falling 8.4 per unit) as the boundary moves up (down).
    """
    a, e = _EDGE_TAP, _EDGE_TAIL
    u = t.abs()  # symmetric about the boundary: 1/2 + sign(t) * (rise over |t|), three linear pieces
    rise = (1 - 2 * a) * u.clamp(0.0, 0.5) + 2 * (a - e) * (u - 0.5).clamp(0.0, 0.5) + 2 * e * (u - 1.0).clamp(0.0, 0.5)
    return 0.5 + torch.sign(t) * rise


_SMEAR = 8.0
"""Decay length (rows) of the fault-plane smear (:func:`_smear_profile`): a fault-zone pixel ``d`` rows inside a
layer is pulled towards the neighbouring layer by ``~exp(-d / 8)`` of the fault's smear weight (a rough fit: the
top layer of one real FlatFault_A map shows +1.7 % of the step 10 rows above the next layer, +4.3 % 2 rows above
it; 4 and 14 rows gave the same realism AUC)."""


def _smear_profile(t: torch.Tensor) -> torch.Tensor:
    """Share of a layer step seen ``t`` rows below the boundary after a Laplace smoothing (:data:`_SMEAR` rows).

    Along real FlatFault_A faults the off-layer pixels are such smoothed (smeared) layers: the slowest (top) layer
    only deviates upwards (no real pixel lies below it; 47 % of the maps of generator version 4 had some), the
    deepest mostly downwards, inner layers towards their nearer neighbour.
    """
    e = 0.5 * torch.exp(-t.abs() / _SMEAR)
    return torch.where(t < 0, e, 1.0 - e)


def _smeared(
    layers: torch.Tensor, depth: torch.Tensor, interfaces: torch.Tensor, velocity: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``layers`` ``[n, H, W]`` (m/s) mixed, by ``weight`` (``[0, 1]``, same shape), with the same layers smeared
    across their interfaces (:func:`_smear_profile`): the fault planes of :func:`_faults`."""
    return layers + weight * (_soft_lookup(depth, interfaces, velocity, _smear_profile) - layers)


def _soft_lookup(
    depth: torch.Tensor,
    interfaces: torch.Tensor,
    velocity: torch.Tensor,
    profile: Callable[[torch.Tensor], torch.Tensor] = _edge_profile,
) -> torch.Tensor:
    """:func:`_lookup` with steps smoothed by ``profile`` (default :func:`_edge_profile`) at sub-pixel depths.

    Same arguments and result shape (``[n, H, W]`` m/s); with :func:`_edge_profile`, rows two or more rows above
    or one below every interface keep the exact layer velocity (``rows``: first pixel of the deeper layer, its
    boundary half a row above). ``profile(t)``: share of a step seen ``t`` rows below its boundary.
    """
    out = velocity[:, :1, None].expand(depth.shape).clone()
    for j in range(interfaces.shape[1]):
        rows = interfaces[:, j, None, :]
        dv = torch.where(torch.isfinite(velocity[:, j + 1]), velocity[:, j + 1] - velocity[:, j], 0.0)
        out += dv.view(-1, 1, 1) * profile(depth + 0.5 - rows)
    return out


def _edge_window(g: torch.Generator, n: int, p_keep: float = 0.7) -> torch.Tensor:
    """How much of the resampling acts in each column: ``[n, 1, NX]`` in ``[0, 1]``.

    Measured on real FlatFault_A maps: on each side, with probability ``p_keep``, the two outermost columns keep
    the unfaulted, unresampled layers (a fault's throw included) and the third one is nearly resampled; else the
    whole map is resampled up to the edge.
    """
    w = torch.ones(n, 1, NX, device=g.device)
    keep = _u(g, (n, 2)) < p_keep
    zero = torch.zeros(n, device=g.device)
    ramp_l = torch.stack([zero, zero, _u(g, (n,), 0.85, 1.0)], 1)
    ramp_r = torch.stack([_u(g, (n,), 0.6, 1.0), _u(g, (n,), 0.0, 0.12), zero], 1)
    w[:, 0, :3] = torch.where(keep[:, :1], ramp_l, 1.0)
    w[:, 0, -3:] = torch.where(keep[:, 1:], ramp_r, 1.0)
    return w


_FAULT_DIPS = ((30.0, 8.0), (40.0, 23.0), (50.0, 30.0), (60.0, 45.0), (70.0, 48.0), (80.0, 103.0))
"""(lowest dip of a 10 deg bin, deg; number of faults) measured on 250 real FlatFault_A maps (from where each
fault cuts the three interfaces): faults are mostly steep, 40 % of them within 10 deg of vertical."""


def _faults(
    g: torch.Generator, n: int, xs: torch.Tensor, zs: torch.Tensor, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical displacement (rows) and fault-plane smear weight (``[0, 1]``) of one or two faults.

    Both ``[n, len(zs), len(xs)]`` on the pixel grid ``xs``, ``zs`` (pixel coordinates).

    A fault passes through column ``x0`` at mid-depth (6-64: anywhere across the map, as in the real FlatFault_A
    maps, whose faults often run close to the left or right edge) with dip ``theta`` (from horizontal, drawn from
    :data:`_FAULT_DIPS`) towards ``+-x``; everything on one side (either) moves down or up by a throw (whole rows
    half of the time, any sub-pixel size otherwise), ramping across a drag zone (``drag``, 1-4 px wide). Real
    FlatFault_A maps move every interface by the same 5-10 rows, and ~40 % of them hold two faults, nearly
    always of opposite dips and throws (a graben / horst block, often reaching an edge): A draws a block 25 % of
    the time and two independent faults (any directions) 11 %; 10 % of the faults die out inside the map (the
    throw fades to zero over 2-12 rows above or below a tip depth, leaving whole rows uncut). Fault planes smear
    the layers (:func:`_fault` mixes them with their :func:`_smear_profile` smoothing) with a weight
    ``eps * 4 u (1 - u)`` for a wider ramp ``u`` (1.5-4 px) of each fault, times U(0, 2) per pixel, at most 1,
    ``eps`` ~ |N(0, 0.15)| on most maps, |N(0, 0.3)| on a quarter of them, in 3 rows out of 4 and a 1 % trace of
    it in the others (real fault zones carry ~170 pixels per map off the layer values, most by less than 1 m/s,
    1-3 per row).
    A: throws 4.5-11 rows. B: throws 5-25 rows, more second faults and blocks.
    """
    tmin, tmax, p_two, p_block = (4.5, 11.0, 0.15, 0.25) if not hard else (5.0, 25.0, 0.5, 0.25)
    X, Z = xs.view(1, 1, -1), zs.view(1, -1, 1)
    lowest, weights = zip(*_FAULT_DIPS, strict=True)
    pick = torch.multinomial(torch.tensor(weights, device=g.device), 2 * n, replacement=True, generator=g)
    dip = torch.deg2rad(torch.tensor(lowest, device=g.device)[pick].view(n, 2) + _u(g, (n, 2), 0.0, 10.0))
    lean = _sign(g, (n, 1))
    lean = torch.cat([lean, torch.where(_u(g, (n, 1)) < 0.5, lean, -lean)], 1)  # second fault: any direction
    x0 = _u(g, (n, 2), 6.0, NX - 6.0)
    throw = _sign(g, (n, 2)) * _u(g, (n, 2), tmin, tmax)
    throw = torch.where(_u(g, (n, 2)) < 0.5, throw.round(), throw)  # half the real throws are whole rows
    drag = _u(g, (n, 2), 1.0, 4.0)
    block = _u(g, (n,)) < p_block
    two = (_u(g, (n,)) < p_two) & ~block
    # block: the two faults lean opposite ways, anywhere across the map (real blocks often reach an edge)
    x0 = torch.where(block[:, None], x0.sort(1).values, x0)
    lean = torch.where(block[:, None], torch.cat([lean[:, :1], -lean[:, :1]], 1), lean)
    # a fault tip: the throw fades out above (or below) depth z_tip
    tipped = _u(g, (n, 2)) < 0.1
    z_tip = _u(g, (n, 2), 10.0, 55.0)
    fade = _u(g, (n, 2), 2.0, 12.0)
    upward = _u(g, (n, 2)) < 0.75

    def side(f: int, width: torch.Tensor) -> torch.Tensor:  # [n, H, W] in [0, 1]: 1 right of fault f, ramping
        p = [v[:, f].view(n, 1, 1) for v in (x0, lean, dip, width)]  # across a zone `width` px wide
        x_fault = p[0] + p[1] * (Z - NZ / 2) / torch.tan(p[2])
        return (0.5 + (X - x_fault) * torch.sin(p[2]) / p[3]).clamp_(0.0, 1.0)

    def taper(f: int) -> torch.Tensor:  # [n, H, 1] in [0, 1]: how much of the throw acts at each depth
        below = (Z - z_tip[:, f].view(n, 1, 1)) / fade[:, f].view(n, 1, 1)
        t = torch.where(upward[:, f].view(n, 1, 1), below, -below - 1.0).clamp(0.0, 1.0)
        return torch.where(tipped[:, f].view(n, 1, 1), t, 1.0)

    right0, right1 = side(0, drag), side(1, drag)
    has1 = (block | two).view(n, 1, 1).float()
    moved0 = right0 * (1.0 - right1 * block.view(n, 1, 1).float())  # a block ends at the second fault
    moved1 = right1 * two.view(n, 1, 1).float()
    # either side may be the one that moves (real maps: the left edge is displaced as often as the right)
    other = (_u(g, (n, 2, 1, 1)) < 0.5).float()
    moved0 = moved0 + other[:, 0] * (1.0 - 2.0 * moved0)
    moved1 = moved1 + other[:, 1] * (two.view(n, 1, 1).float() - 2.0 * moved1)
    shift = throw[:, 0].view(n, 1, 1) * moved0 * taper(0) + throw[:, 1].view(n, 1, 1) * moved1 * taper(1)
    eps = _normal(g, (n, 2)).abs() * torch.where(_u(g, (n, 1)) < 0.25, 0.3, 0.15)
    eps0, eps1 = eps[:, 0].view(n, 1, 1) * taper(0), eps[:, 1].view(n, 1, 1) * has1 * taper(1)
    wide = _u(g, (n, 2), 1.5, 4.0)  # real fault-plane streaks are 1-4 px wide, their values differ pixel by pixel
    s0, s1 = side(0, wide), side(1, wide)
    streak = eps0 * 4 * s0 * (1 - s0) + eps1 * 4 * s1 * (1 - s1)
    # patchy: 3 rows in 4 carry a visible streak, the others only a trace (real fault zones hold ~170 pixels
    # per map off the layer values, most by less than 1 m/s)
    streak = streak * _u(g, streak.shape, 0.0, 2.0) * torch.where(_u(g, (n, zs.shape[0], 1)) < 0.75, 1.0, 0.01)
    return shift, streak.clamp_(max=1.0)


def _fault(g: torch.Generator, n: int, hard: bool, curved: bool) -> torch.Tensor:
    """Flat or curved layers cut by dipping faults: ``[n, NZ, NX]`` m/s.

    A: 4 layers ~17.5 rows thick (interfaces on pixel edges, moved by sub-pixel throws), two velocities below
    and two above 3000 m/s (as measured on FlatFault_A), :func:`_faults`, then resampled as the real maps are:
    smoothed edges (:func:`_edge_profile`), a slight stretch (:data:`_WARP_STRETCH`), edge columns often left
    unresampled (:func:`_edge_window`); the fault planes smear the layers (:func:`_smear_profile`).
    B: 4-8 unordered layers of random thickness, larger throws; CurveFault_B stays pixel-sharp and
    integer-valued like the real CurveFault sample.
    CurveFault bends the layers with the CurveVel curves (:func:`_curve_shifts`) before faulting.
    """
    xs = torch.arange(NX, dtype=torch.float32, device=g.device)
    zs = torch.arange(NZ, dtype=torch.float32, device=g.device)
    if not hard:
        lmax = 4
        layers = torch.full((n,), lmax, device=g.device)
        j = torch.arange(1, lmax, device=g.device)
        base = (j * NZ / lmax - 0.3 + _normal(g, (n, lmax - 1), 1.5)).round()  # on pixel edges; throws are not
        mid = 0.5 * (VMIN + VMAX)
        velocity = torch.cat([_u(g, (n, 2), VMIN, mid).sort(1).values, _u(g, (n, 2), mid, VMAX).sort(1).values], 1)
        velocity = velocity.round()
    else:
        lmax = 8
        layers = _choice(g, n, range(4, lmax + 1), [1.0] * (lmax - 3))
        base = _random_interfaces(g, layers, lmax)
        velocity = _random_velocities(g, n, lmax)
    if curved:
        thickness = NZ / layers.float()
        scale, own = (thickness, 1.4) if not hard else (1.5 * thickness, 2.8)
        interfaces = base[:, :, None] + _curve_shifts(g, n, lmax - 1, scale, own)
    else:
        interfaces = base[:, :, None]
    shift, smear = _faults(g, n, xs, zs, hard)
    z = zs.view(1, -1, 1)
    if hard and curved:  # the real CurveFault sample we have is unsmoothed, integer-valued
        depth = z - shift
        return _smeared(_lookup(depth, interfaces, velocity), depth, interfaces, velocity, smear).round()
    # the faulted map is resampled: the throw and a slight stretch act inside, not always on the edge columns
    depth = z - shift + _edge_window(g, n) * (z + 0.5) * _WARP_STRETCH
    return _smeared(_soft_lookup(depth, interfaces, velocity), depth, interfaces, velocity, smear)


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
