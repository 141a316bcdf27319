"""Exact finite-difference simulator of the competition's seismic data (docs/physics.md), in plain PyTorch.

``simulate(velocity)`` maps velocity maps ``[B, 70, 70]`` (m/s) to shot gathers ``[B, 5, 1000, 70]`` that
match the organisers' data to float32 round-off (bit-exactly on the reference pair, CPU included). It is
differentiable with respect to the velocity through autograd, with gradient checkpointing over time so
memory stays bounded.

This module is the reference implementation and the public entry point; on CUDA, ``simulate`` runs the
same arithmetic in fused Triton kernels instead (:mod:`fwi.physics.triton_sim`, ``backend="auto"``).

Why the arithmetic looks fussy: the organisers ran OpenFWI's PyTorch forward model on a GPU, where a
tensor divided by a Python scalar is computed as a multiplication by the scalar's float32 reciprocal. We
write those divisions as ``x * (1 / d)`` so that CPU and GPU both reproduce the data bit for bit, and we
keep the order of every other operation (the Laplacian's summation order included) as it was.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from fwi.physics import triton_sim
from fwi.physics.acquisition import DEFAULT, VMAX, VMIN, Acquisition
from fwi.physics.triton_sim import TritonOptions

C1, C2, C3 = -5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0
"""Fourth-order Laplacian weights: centre, ±1 neighbours, ±2 neighbours."""

STABILITY = math.sqrt(3.0 / 8.0)
"""Largest stable Courant number ``v dt / dx`` of this scheme in 2-D (4th order in space, 2nd in time)."""


BACKENDS = ("auto", "torch", "triton")
"""Implementations of :func:`simulate`: ``torch`` (the reference, any device), ``triton`` (fused GPU kernels,
:mod:`fwi.physics.triton_sim`), ``auto`` (triton on CUDA when the triton package is installed, else torch)."""


def simulate(
    velocity: Tensor,
    acq: Acquisition = DEFAULT,
    *,
    checkpoint_segments: int | None = None,
    check_range: bool = True,
    compile: bool = False,
    backend: str = "auto",
    wavefield_dtype: torch.dtype | None = None,
    triton_options: TritonOptions | None = None,
) -> Tensor:
    """Simulate the shot gathers of a batch of velocity maps.

    Args:
        velocity: ``[B, nz, nx]`` or ``[B, 1, nz, nx]`` velocity in m/s, float32 (or float64, e.g. for
            gradient checks); may require grad.
        acq: survey geometry and discretisation (default: the competition's).
        checkpoint_segments: split the ``nt`` time steps into this many segments for gradient
            checkpointing (only the wavefields at segment boundaries are kept for the backward pass;
            each segment is recomputed once during it). ``None``: ``ceil(sqrt(nt))`` when a gradient
            will be needed, off otherwise. ``0`` or ``1``: off.
        check_range: reject velocities outside ``[VMIN, VMAX]``. Turn off for refinement steps or toy
            grids; the stability limit ``v dt / dx <= sqrt(3/8)`` is enforced either way.
        compile: run the time step through ``torch.compile`` (torch backend; opt-in; see
            ``benchmarks/simulator.py`` for when it pays; fused kernels may differ from eager at round-off level).
        backend: one of :data:`BACKENDS`. ``triton`` needs CUDA tensors (or ``TRITON_INTERPRET=1`` on the CPU,
            for tests); its gradient supports no second derivatives.
        wavefield_dtype: triton backend only: store the wavefield as ``torch.float16`` or ``torch.bfloat16``
            (float32 arithmetic) for faster bulk generation; float32 velocity, no gradient. None: exact.
        triton_options: tuning of the triton backend (:class:`~fwi.physics.triton_sim.TritonOptions`).

    Returns:
        ``[B, n_sources, nt, n_receivers]`` pressure, same dtype and device as ``velocity``; sample ``t``
        is the wavefield right after step ``t`` and its injection. The last sample is zero when
        ``acq.zero_last_sample``.

    Raises:
        ValueError: wrong shape or dtype, non-finite values, velocity out of range or unstable; a backend or
            option that cannot run here (see :func:`resolve_backend`).
    """
    v = _validated(velocity, acq, check_range)  # [B, nz, nx]
    segments = 0  # no checkpointing unless a gradient will be needed
    if torch.is_grad_enabled() and v.requires_grad:
        segments = math.ceil(math.sqrt(acq.nt)) if checkpoint_segments is None else checkpoint_segments
    if resolve_backend(backend, v.device, compile) == "triton":
        out = triton_sim.simulate(v, acq, _coefficients, segments, wavefield_dtype, triton_options)
    elif wavefield_dtype is not None:
        raise ValueError("wavefield_dtype needs the triton backend")
    elif v.device.type == "cpu" and v.shape[0] > 1:
        # One sample at a time on CPU: its 5 wavefields (1.9 MB) stay in cache, and batches run ~4x
        # faster per sample than as one tensor (measured, B=4, 2 cores). Results are identical.
        step = _compiled_step() if compile else _step
        out = torch.cat([_simulate(x, acq, segments, step) for x in v.split(1)])
    else:
        out = _simulate(v, acq, segments, _compiled_step() if compile else _step)
    if acq.zero_last_sample:
        out[:, :, -1] = 0
    return out


def resolve_backend(backend: str, device: torch.device, compile: bool = False) -> str:
    """``torch`` or ``triton``: the implementation :func:`simulate` uses for ``backend`` on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and not compile and triton_sim.available() else "torch"
    if backend == "triton":
        if compile:
            raise ValueError("compile=True compiles the torch backend's step; the triton backend has its own kernels")
        if not triton_sim.available():
            raise ValueError("backend='triton' needs the triton package")
        if device.type != "cuda" and not triton_sim.interpreted():
            raise ValueError("backend='triton' runs on CUDA tensors (on the CPU only under TRITON_INTERPRET=1)")
    return backend


def _simulate(v: Tensor, acq: Acquisition, segments: int, step) -> Tensor:
    """:func:`simulate` on validated ``[B, nz, nx]`` velocities, all samples and shots as one tensor."""
    a, b, alpha, src = _coefficients(v, acq)
    rows, cols = acq.padded_shape
    p = v.new_zeros(v.shape[0], acq.n_sources, rows, cols)  # wavefield at step t, [B, S, H, W]
    p_prev = torch.zeros_like(p)  # at step t - 1
    shots = torch.arange(acq.n_sources, device=v.device)
    src_x = torch.tensor(acq.source_x, device=v.device) + acq.nbc  # source columns, padded grid
    rec_x = torch.tensor(acq.receiver_x, device=v.device) + acq.nbc  # receiver columns, padded grid
    geometry = (shots, acq.source_z + acq.nbc, src_x, acq.receiver_z + acq.nbc, rec_x)

    bounds = _segment_bounds(acq.nt, segments)
    traces = []
    for t0, t1 in itertools.pairwise(bounds):
        args = (p, p_prev, a, b, alpha, src[..., t0:t1], geometry, step)
        if len(bounds) > 2:  # keep only (p, p_prev) at segment ends; recompute inside during backward
            p, p_prev, seg = checkpoint(_run, *args, use_reentrant=False)
        else:
            p, p_prev, seg = _run(*args)
        traces.append(seg)
    return torch.cat(traces, dim=2)  # [B, S, nt, R]


def _validated(velocity: Tensor, acq: Acquisition, check_range: bool) -> Tensor:
    """``velocity`` as ``[B, nz, nx]`` after the checks of :func:`simulate`, one device sync in all."""
    shape = tuple(velocity.shape)
    if velocity.dim() == 4 and shape[1] == 1:
        velocity = velocity[:, 0]
    if velocity.dim() != 3 or tuple(velocity.shape[1:]) != (acq.nz, acq.nx) or velocity.shape[0] == 0:
        raise ValueError(
            f"velocity must have shape [B, {acq.nz}, {acq.nx}] or [B, 1, {acq.nz}, {acq.nx}], got {list(shape)}"
        )
    if velocity.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"velocity must be float32 or float64, got {velocity.dtype}")
    d = velocity.detach()
    finite, vmin, vmax = torch.stack([torch.isfinite(d).all().to(d.dtype), d.min(), d.max()]).tolist()
    if not finite:
        raise ValueError("velocity contains non-finite values (NaN or inf)")
    if check_range and (vmin < VMIN or vmax > VMAX):
        raise ValueError(f"velocity must lie in [{VMIN:g}, {VMAX:g}] m/s, found min {vmin:g} max {vmax:g}")
    limit = STABILITY * acq.dx / acq.dt
    if vmax > limit:
        raise ValueError(f"velocity max {vmax:g} m/s exceeds the stability limit sqrt(3/8) dx/dt = {limit:g} m/s")
    return velocity


def _coefficients(v: Tensor, acq: Acquisition) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-cell update coefficients and the per-step source terms.

    Returns ``a = 2 + 2 c1 alpha - kappa dt``, ``b = 1 - kappa dt`` and ``alpha = (v dt / dx)^2``, each
    ``[B, 1, H, W]`` on the padded grid, and ``src = (v_src dt)^2 w[t]``, ``[B, S, nt]``.
    """
    nbc, dt = acq.nbc, acq.dt
    vp = F.pad(v[:, None], (nbc, nbc, nbc, nbc), mode="replicate")  # [B, 1, H, W], edge-replicated
    alpha = (vp * dt * (1.0 / acq.dx)) ** 2
    kappa = _damping(v.amin(dim=(1, 2)), acq)  # [B, 1, H, W], 1/s
    kdt = kappa * dt
    a = 2 + 2 * C1 * alpha - kdt
    b = 1 - kdt
    v_src = v[:, acq.source_z, list(acq.source_x)]  # [B, S]
    w = torch.as_tensor(acq.wavelet(), dtype=v.dtype, device=v.device)  # [nt]
    src = ((v_src * dt) ** 2)[..., None] * w  # [B, S, nt]
    return a, b, alpha, src


def _damping(vmin: Tensor, acq: Acquisition) -> Tensor:
    """Sponge damping ``kappa`` (1/s), ``[B, 1, H, W]``, from each sample's minimum velocity ``vmin`` [B].

    The same numbers as :meth:`Acquisition.damping`, computed in the input's dtype in OpenFWI's order of
    operations (so float32 rounding matches the organisers'), and differentiable through ``vmin``.
    """
    nbc, dx = acq.nbc, acq.dx
    a = (nbc - 1) * dx
    kappa0 = 3.0 * vmin * math.log(1e7) * (1.0 / (2.0 * a))  # [B]
    ramp1d = (torch.arange(nbc, dtype=vmin.dtype, device=vmin.device) * dx * (1.0 / a)) ** 2  # i = 0..nbc-1
    ramp = vmin.new_zeros(acq.padded_shape)  # [H, W]: (i dx / a)^2 in the sponge, 0 inside
    ramp[:nbc] = ramp1d.flip(0)[:, None]  # top and bottom strips first, ...
    ramp[-nbc:] = ramp1d[:, None]
    ramp[:, :nbc] = ramp1d.flip(0)  # ... then left and right strips over every row
    ramp[:, -nbc:] = ramp1d
    return kappa0[:, None, None, None] * ramp


def _step(
    p: Tensor, p_prev: Tensor, a: Tensor, b: Tensor, alpha: Tensor, src: Tensor, geometry: tuple
) -> tuple[Tensor, Tensor]:
    """One time step: leapfrog update, source injection, recording. Returns ``(p_next, traces)``.

    ``p``, ``p_prev``: ``[B, S, H, W]``; ``a``, ``b``, ``alpha``: ``[B, 1, H, W]`` (shared by the shots);
    ``src``: ``[B, S]`` amplitudes ``(v_src dt)^2 w[t]``; ``traces``: ``[B, S, R]``.
    """
    return _Step.apply(p, p_prev, a, b, alpha, src, geometry)


class _Step(torch.autograd.Function):
    """:func:`_step` with a hand-written backward (fwd+grad ~1.5x faster on CPU than plain autograd).

    Autograd through the plain expression backpropagates the source and receiver indexing through
    full-size zero-filled gradients and the Laplacian through eight shifted views. Here the backward
    keeps the inputs (alive anyway) and the neighbour sum ``n`` (one wavefield per step, bounded by the
    checkpointing), and reuses :func:`_neighbours` for the adjoint: it is self-adjoint, since the
    periodic shifts by +k and -k are each other's transposes and carry equal weights. The backward is
    made of differentiable ops, so second derivatives work too.
    """

    @staticmethod
    def forward(ctx, p, p_prev, a, b, alpha, src, geometry):
        shots, sz, sx, rz, rx = geometry
        n = _neighbours(p)
        p_next = a * p - b * p_prev + alpha * n
        p_next[:, shots, sz, sx] += src  # each shot its own source, added after the update
        ctx.save_for_backward(p, p_prev, a, b, alpha, n)
        ctx.geometry = geometry
        return p_next, p_next[:, :, rz, rx]  # recorded right after the injection

    @staticmethod
    def backward(ctx, g_next, g_traces):
        p, p_prev, a, b, alpha, n = ctx.saved_tensors
        shots, sz, sx, rz, rx = ctx.geometry
        g = g_next.clone()  # total gradient w.r.t. p_next
        g[:, :, rz, rx] += g_traces
        need = ctx.needs_input_grad
        return (
            a * g + _neighbours(alpha * g) if need[0] else None,
            -(b * g) if need[1] else None,
            (g * p).sum_to_size(a.shape) if need[2] else None,  # summed over the shots
            (-(g * p_prev)).sum_to_size(b.shape) if need[3] else None,
            (g * n).sum_to_size(alpha.shape) if need[4] else None,
            g[:, shots, sz, sx] if need[5] else None,
            None,
        )


def _neighbours(p: Tensor) -> Tensor:
    """``c2 sum(+-1 neighbours in z and x) + c3 sum(+-2 neighbours)`` of ``p`` ``[B, S, H, W]``.

    The off-centre part of the 4th-order Laplacian times ``dx^2``. Neighbours wrap around the outer
    edge, as ``torch.roll`` did in the organisers' code (the sponge makes the wrap matter only at
    round-off level); one circular pad and shifted views of it replace the eight rolls (faster, same
    numbers). The sums keep the original order: z before x.
    """
    n_b, n_s, h, w = p.shape
    q = F.pad(p.reshape(n_b * n_s, 1, h, w), (2, 2, 2, 2), mode="circular").view(n_b, n_s, h + 4, w + 4)

    def shifted(dz: int, dx: int) -> Tensor:  # p[z + dz, x + dx], wrapped
        return q[:, :, 2 + dz : 2 + dz + h, 2 + dx : 2 + dx + w]

    return C2 * (shifted(-1, 0) + shifted(1, 0) + shifted(0, -1) + shifted(0, 1)) + C3 * (
        shifted(-2, 0) + shifted(2, 0) + shifted(0, -2) + shifted(0, 2)
    )


def _run(
    p: Tensor, p_prev: Tensor, a: Tensor, b: Tensor, alpha: Tensor, src: Tensor, geometry: tuple, step=_step
) -> tuple[Tensor, Tensor, Tensor]:
    """Advance ``src.shape[-1]`` steps; returns the last two wavefields and the traces ``[B, S, n, R]``."""
    traces = []
    for t in range(src.shape[-1]):
        p_next, recorded = step(p, p_prev, a, b, alpha, src[..., t], geometry)
        p, p_prev = p_next, p
        traces.append(recorded)
    return p, p_prev, torch.stack(traces, dim=2)


def _segment_bounds(nt: int, segments: int) -> list[int]:
    """Split ``range(nt)`` into ``segments`` nearly equal pieces; ``[0, nt]`` for 0 or 1."""
    segments = max(1, min(segments, nt))
    return [round(i * nt / segments) for i in range(segments + 1)]


@functools.cache
def _compiled_step():
    """The time step compiled by ``torch.compile`` (built on first use, once per process)."""
    return torch.compile(_step, dynamic=False)
