"""The Triton backend of :func:`fwi.physics.simulator.simulate`: fused kernels, CUDA graphs, L2-sized chunks.

The PyTorch path launches about ten kernels per time step and moves every shot's wavefield through memory
several times per step. Here (kernels in :mod:`fwi.physics.triton_kernels`):

- one launch advances all shots of a sample by one step (or ``steps_per_launch`` steps, temporal blocking),
  with the source injection and the recording fused in, and reads the per-cell coefficients once for the
  five shots;
- without gradient, the whole 1000-step loop is captured once per batch shape as a CUDA graph and
  replayed (one CPU call instead of 1000 launches), and the batch is run in chunks small enough for the
  wavefields to stay in the L2 cache;
- with gradient, :class:`_Simulate` keeps the wavefields only at checkpoint boundaries, recomputes each
  segment in the backward pass and runs the adjoint kernel back through it. The coefficients come from
  the PyTorch path's own (differentiable) :func:`~fwi.physics.simulator._coefficients`, so the gradient
  reaches the velocity through the same edge-replicated padding, damping-from-``vmin`` and source terms.

Float32 results equal the PyTorch path's up to round-off (bit-identical under the interpreter on the CPU;
``benchmarks/gpu_report.py`` measures the GPU). A reduced-precision wavefield (float16/bfloat16 storage,
float32 arithmetic) halves the memory traffic for bulk data generation, at an error stated in README.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fwi.physics.acquisition import Acquisition

WAVEFIELD_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Storage dtypes of the wavefield (float32 input only; the arithmetic stays float32)."""


def available() -> bool:
    """The ``triton`` package is installed (it ships with CUDA builds of torch on Linux)."""
    return importlib.util.find_spec("triton") is not None


def interpreted() -> bool:
    """Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``, set before the first kernel import)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class TritonOptions:
    """Tuning of the Triton backend. Results do not depend on it, except that a reduced-precision
    wavefield is rounded once per launch (so ``steps_per_launch`` changes its error)."""

    steps_per_launch: int = 2
    """Time steps per launch of the multi-step kernel (temporal blocking); 1: the one-step kernel only."""
    region: tuple[int, int] = (32, 64)
    """Rows, columns of a multi-step program's region: its tile plus a halo of ``2 * steps_per_launch``
    cells on every side (powers of 2)."""
    block: tuple[int, int] = (16, 64)
    """Rows, columns of a one-step or adjoint program's tile (powers of 2)."""
    num_warps: int = 8
    """Warps per program."""
    chunk: int | None = None
    """Samples per forward pass without gradient. None: as many as keep their wavefields within the L2
    cache on CUDA, the whole batch elsewhere."""
    graphs: bool = True
    """Replay forward passes without gradient from captured CUDA graphs (CUDA only)."""

    def __post_init__(self):
        if self.steps_per_launch < 1:
            raise ValueError(f"steps_per_launch must be >= 1, got {self.steps_per_launch}")
        if not all(_power_of_two(n) for n in (*self.region, *self.block)):
            raise ValueError(f"region {self.region} and block {self.block} must be powers of 2")
        if self.steps_per_launch > 1 and min(self.region) <= 4 * self.steps_per_launch:
            raise ValueError(f"region {self.region} leaves no tile inside the halo of "
                             f"{2 * self.steps_per_launch} cells of {self.steps_per_launch} steps")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be >= 1 or None, got {self.chunk}")


@dataclass(frozen=True)
class _Geometry:
    """What the kernels need of an :class:`Acquisition`, in padded-grid coordinates."""

    H: int  # padded rows
    W: int  # padded columns
    nt: int
    sz: int  # source row
    src_x: tuple[int, ...]  # source columns
    rz: int  # receiver row
    rc0: int  # first recorded column (the interior's first)
    NR: int  # recorded columns (the interior's width)

    @classmethod
    def of(cls, acq: Acquisition) -> _Geometry:
        H, W = acq.padded_shape
        return cls(H, W, acq.nt, acq.source_z + acq.nbc, tuple(x + acq.nbc for x in acq.source_x),
                   acq.receiver_z + acq.nbc, acq.nbc, acq.nx)

    @property
    def S(self) -> int:
        return len(self.src_x)


def _kernels():
    from fwi.physics import triton_kernels  # imports triton: only once the backend runs

    return triton_kernels


def _tiles(n: int, size: int) -> int:
    return -(-n // size)


def _step(p: Tensor, pp: Tensor, out: Tensor, coefs: tuple, amp: Tensor, src_x: Tensor, rec: Tensor | None, t: int,
          g: _Geometry, opts: TritonOptions) -> None:
    """Launch step ``t`` of all shots: ``out`` = the wavefield after it (may be ``pp``), recorded into ``rec``."""
    bz, bx = opts.block
    grid = (_tiles(g.H, bz) * _tiles(g.W, bx), p.shape[0])
    _kernels().step_kernel[grid](
        p, pp, out, *coefs, amp, src_x, amp if rec is None else rec, t, g.nt, g.H, g.W, g.sz, g.rz, g.rc0, g.NR,
        S=g.S, BZ=bz, BX=bx, RECORD=rec is not None, num_warps=opts.num_warps, enable_fp_fusion=False)


def _advance(state: list[Tensor], t0: int, t1: int, coefs: tuple, amp: Tensor, src_x: Tensor, rec: Tensor,
             g: _Geometry, opts: TritonOptions) -> list[Tensor]:
    """Steps ``t0 .. t1-1``, recorded. ``state`` = ``[p_t0, p_{t0-1}, spare, spare]`` (spares only for
    multi-step launches); returns the buffers reordered so that it starts with ``p_t1, p_{t1-1}``."""
    k = opts.steps_per_launch
    rz, rx = opts.region
    grid = (_tiles(g.H, rz - 4 * k) * _tiles(g.W, rx - 4 * k), amp.shape[0])
    t = t0
    while k > 1 and t + k <= t1:
        p, pp, p_out, pp_out = state
        _kernels().multistep_kernel[grid](
            p, pp, p_out, pp_out, *coefs, amp, src_x, rec, t, g.nt, g.H, g.W, g.sz, g.rz, g.rc0, g.NR,
            S=g.S, STEPS=k, RZ=rz, RX=rx, num_warps=opts.num_warps, enable_fp_fusion=False)
        state = [p_out, pp_out, p, pp]
        t += k
    for step in range(t, t1):  # the remainder, one step per launch, in place
        _step(state[0], state[1], state[1], coefs, amp, src_x, rec, step, g, opts)
        state = [state[1], state[0], *state[2:]]
    return state


def _new_state(batch: int, g: _Geometry, opts: TritonOptions, dtype: torch.dtype, device) -> list[Tensor]:
    """Zero wavefields ``p_0, p_{-1}`` (and spares for multi-step launches), ``[B, S, H, W]`` each."""
    n = 4 if opts.steps_per_launch > 1 else 2
    return [torch.zeros(batch, g.S, g.H, g.W, dtype=dtype, device=device) for _ in range(n)]


def _src_x(g: _Geometry, device) -> Tensor:
    return torch.tensor(g.src_x, dtype=torch.int32, device=device)


def _forward(coefs: tuple, amp: Tensor, g: _Geometry, opts: TritonOptions, storage: torch.dtype) -> Tensor:
    """All ``nt`` steps of a batch without gradient; returns the recorded rows ``[B, S, nt, NR]``."""
    rec = amp.new_empty(amp.shape[0], g.S, g.nt, g.NR)
    _advance(_new_state(amp.shape[0], g, opts, storage, amp.device), 0, g.nt, coefs, amp, _src_x(g, amp.device),
             rec, g, opts)
    return rec


class _Graphed:
    """:func:`_forward` for one batch shape, captured once as a CUDA graph and replayed per call."""

    def __init__(self, batch: int, g: _Geometry, opts: TritonOptions, storage: torch.dtype, dtype: torch.dtype,
                 device: torch.device):
        self.g, self.opts = g, opts
        self.inputs = [torch.zeros(batch, g.H, g.W, dtype=dtype, device=device) for _ in range(3)]
        self.amp = torch.zeros(batch, g.S, g.nt, dtype=dtype, device=device)
        self.src_x = _src_x(g, device)
        self.state = _new_state(batch, g, opts, storage, device)
        self.rec = self.amp.new_empty(batch, g.S, g.nt, g.NR)
        side = torch.cuda.Stream(device)  # warm-up (kernel compilation) off the capturing stream
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            self._run()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (a DataLoader's pin-memory thread) may not break the capture.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self._run()

    def _run(self) -> None:
        for field in self.state:
            field.zero_()
        _advance(list(self.state), 0, self.g.nt, tuple(self.inputs), self.amp, self.src_x, self.rec, self.g,
                 self.opts)

    def __call__(self, coefs: tuple, amp: Tensor) -> Tensor:
        for static, value in zip(self.inputs, coefs, strict=True):
            static.copy_(value)
        self.amp.copy_(amp)
        self.graph.replay()
        return self.rec.clone()


@functools.lru_cache(maxsize=4)
def _graphed(batch: int, g: _Geometry, opts: TritonOptions, storage: torch.dtype, dtype: torch.dtype,
             device: torch.device) -> _Graphed:
    """The captured forward for this shape (a few kept: each holds its batch's buffers)."""
    return _Graphed(batch, g, opts, storage, dtype, device)


class _Simulate(torch.autograd.Function):
    """Rows ``[B, S, nt, NR]`` from coefficients ``a, b, alpha`` ``[B, H, W]`` and amplitudes ``[B, S, nt]``,
    with a checkpointed adjoint backward: the forward keeps ``(p, p_prev)`` at the segment starts
    ``bounds[:-1]``; the backward recomputes one segment at a time (all its wavefields) and runs the adjoint
    kernel back through it."""

    @staticmethod
    def forward(ctx, a, b, alpha, amp, g: _Geometry, opts: TritonOptions, bounds: tuple[int, ...]):
        coefs = (a, b, alpha)
        src_x = _src_x(g, a.device)
        rec = amp.new_empty(amp.shape[0], g.S, g.nt, g.NR)
        state = _new_state(amp.shape[0], g, opts, a.dtype, a.device)
        saved = []
        for t0, t1 in itertools.pairwise(bounds):
            saved += [state[0].clone(), state[1].clone()]
            state = _advance(state, t0, t1, coefs, amp, src_x, rec, g, opts)
        ctx.save_for_backward(a, b, alpha, amp, src_x, *saved)
        ctx.g, ctx.opts, ctx.bounds = g, opts, bounds
        return rec

    @staticmethod
    @once_differentiable
    def backward(ctx, grec):
        a, b, alpha, amp, src_x, *saved = ctx.saved_tensors
        g, opts, bounds = ctx.g, ctx.opts, ctx.bounds
        coefs = (a, b, alpha)
        grec = grec.contiguous()
        grads = [torch.zeros_like(a) for _ in range(3)]
        gamp = grec.new_zeros(grec.shape[0], g.S, g.nt)
        g1 = torch.zeros_like(saved[0])  # total gradient w.r.t. p_{k+1}
        g1[:, :, g.rz, g.rc0 : g.rc0 + g.NR] = grec[:, :, -1]
        g2 = torch.zeros_like(g1)  # ... w.r.t. p_{k+2}
        bz, bx = opts.block
        grid = (_tiles(g.H, bz) * _tiles(g.W, bx), a.shape[0])
        kernels = _kernels()
        for i in reversed(range(len(bounds) - 1)):
            t0, t1 = bounds[i], bounds[i + 1]
            hist = g1.new_empty(t1 - t0 + 2, *g1.shape)  # hist[m] = p_{t0 + m - 1}
            hist[0], hist[1] = saved[2 * i + 1], saved[2 * i]
            for m in range(t1 - t0):
                _step(hist[m + 1], hist[m], hist[m + 2], coefs, amp, src_x, None, t0 + m, g, opts)
            for k in reversed(range(t0, t1)):
                kernels.adjoint_kernel[grid](
                    g1, g2, g2, hist[k - t0 + 1], hist[k - t0], *coefs, *grads, grec, gamp, src_x,
                    k, g.nt, g.H, g.W, g.sz, g.rz, g.rc0, g.NR,
                    S=g.S, BZ=bz, BX=bx, num_warps=opts.num_warps, enable_fp_fusion=False)
                g1, g2 = g2, g1
        return *grads, gamp, None, None, None


def _default_chunk(batch: int, g: _Geometry, opts: TritonOptions, storage: torch.dtype, device: torch.device) -> int:
    """Samples whose wavefields and coefficients fit in 3/4 of the L2 cache (CUDA); the whole batch elsewhere."""
    if device.type != "cuda":
        return batch
    fields = 4 if opts.steps_per_launch > 1 else 2
    per_sample = g.H * g.W * (fields * g.S * storage.itemsize + 3 * 4)
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    return max(1, min(batch, int(0.75 * l2) // per_sample))


def simulate(v: Tensor, acq: Acquisition, coefficients, segments: int, wavefield_dtype: torch.dtype | None,
             options: TritonOptions | None) -> Tensor:
    """Recorded traces ``[B, S, nt, R]`` of validated velocities ``v`` ``[B, nz, nx]`` (m/s).

    ``coefficients(v, acq)`` is the PyTorch path's coefficient function (differentiable); ``segments``:
    checkpoint segments when a gradient is needed (0 or 1: one); ``wavefield_dtype``: storage of the
    wavefield (None: ``v``'s dtype; float16/bfloat16 only for float32 ``v`` without gradient).
    """
    opts = options or TritonOptions()
    g = _Geometry.of(acq)
    a, b, alpha, amp = coefficients(v, acq)
    coefs = tuple(c[:, 0].contiguous() for c in (a, b, alpha))  # [B, H, W], shared by the shots
    amp = amp.contiguous()
    grad = torch.is_grad_enabled() and v.requires_grad
    storage = wavefield_dtype or v.dtype
    if storage != v.dtype and (v.dtype != torch.float32 or storage not in WAVEFIELD_DTYPES or grad):
        raise ValueError(f"wavefield_dtype {storage} needs float32 velocity and no gradient "
                         f"(got {v.dtype}, gradient {'on' if grad else 'off'})")
    if grad:
        n = max(1, min(segments, acq.nt))
        bounds = tuple(round(i * acq.nt / n) for i in range(n + 1))
        rows = _Simulate.apply(*coefs, amp, g, opts, bounds)
    else:
        chunk = opts.chunk or _default_chunk(len(v), g, opts, storage, v.device)
        graphs = opts.graphs and v.device.type == "cuda"
        parts = []
        for start in range(0, len(v), chunk):
            part = tuple(c[start : start + chunk] for c in coefs)
            amp_part = amp[start : start + chunk]
            if graphs:
                parts.append(_graphed(len(amp_part), g, opts, storage, v.dtype, v.device)(part, amp_part))
            else:
                parts.append(_forward(part, amp_part, g, opts, storage))
        rows = torch.cat(parts) if len(parts) > 1 else parts[0]
    if acq.receiver_x == tuple(range(acq.nx)):
        return rows
    return rows.index_select(3, torch.tensor(acq.receiver_x, device=v.device))
