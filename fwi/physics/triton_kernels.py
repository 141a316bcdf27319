"""Triton kernels of the exact simulator: the fused time step, a multi-step variant and the adjoint step.

Imported only by :mod:`fwi.physics.triton_sim` when the Triton backend runs (it needs the ``triton``
package; on a CPU only under ``TRITON_INTERPRET=1``, which the tests use). Layouts, all contiguous:

- wavefields ``[B, S, H, W]`` on the padded grid, in the storage dtype (float32/float64, or float16/bfloat16
  for the reduced-precision option: loaded into the compute dtype, rounded only when stored);
- per-cell coefficients ``a, b, alpha`` ``[B, H, W]`` in the compute dtype (float32 or float64), shared by
  the ``S`` shots of a sample: one program updates one tile of **all** shots of one sample, so each
  coefficient is read once per tile and step instead of once per shot;
- source amplitudes ``amp`` ``[B, S, nt]`` (``(v_src dt)^2 w[t]``); source columns ``src_x`` ``[S]`` int32,
  source row ``sz`` (padded coordinates);
- recorded traces ``rec`` ``[B, S, nt, NR]``: row ``rz`` of the wavefield, columns ``rc0 .. rc0 + NR - 1``,
  right after each step's injection (the caller picks the receivers' columns out of them).

The arithmetic is the PyTorch path's, operation for operation (neighbours summed z before x, the update as
``(a p - b p_prev) + alpha n``, injection added after it), and launches pass ``enable_fp_fusion=False`` so
no multiply-add is contracted: each value is rounded exactly as in the eager PyTorch path. Neighbours wrap
around the grid's edge as ``torch.roll`` did in the organisers' code.
"""

from __future__ import annotations

import triton
import triton.language as tl

from fwi.physics.simulator import C2 as _C2
from fwi.physics.simulator import C3 as _C3

C2 = tl.constexpr(_C2)
C3 = tl.constexpr(_C3)


@triton.jit
def _wrap(i, n):
    """``i mod n`` in ``[0, n)`` for any integer ``i`` (whichever sign convention ``%`` follows)."""
    return ((i % n) + n) % n


@triton.jit
def _stencil(zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2):
    """The Laplacian's off-centre part times ``dx^2``, summed in the PyTorch path's order."""
    return C2 * (((zm1 + zp1) + xm1) + xp1) + C3 * (((zm2 + zp2) + xm2) + xp2)


@triton.jit
def _offsets(z, x, H, W):
    """Flat offsets of the cells ``(z, x)`` (``[BZ, 1]`` and ``[1, BX]`` grid coordinates, any integers) and of
    their 8 stencil neighbours, wrapped around the grid: centre, z-1, z+1, x-1, x+1, z-2, z+2, x-2, x+2."""
    r0, c0 = _wrap(z, H) * W, _wrap(x, W)
    return (r0 + c0, _wrap(z - 1, H) * W + c0, _wrap(z + 1, H) * W + c0, r0 + _wrap(x - 1, W),
            r0 + _wrap(x + 1, W), _wrap(z - 2, H) * W + c0, _wrap(z + 2, H) * W + c0, r0 + _wrap(x - 2, W),
            r0 + _wrap(x + 2, W))


@triton.jit
def _ring(ptr, w_ptr, zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2, ct: tl.constexpr, WEIGHTED: tl.constexpr):
    """:func:`_stencil` of the field at ``ptr`` (times the weights at ``w_ptr`` when ``WEIGHTED``) over the
    neighbour offsets of :func:`_offsets`, in the compute dtype ``ct``."""
    f_zm1, f_zp1 = tl.load(ptr + zm1).to(ct), tl.load(ptr + zp1).to(ct)
    f_xm1, f_xp1 = tl.load(ptr + xm1).to(ct), tl.load(ptr + xp1).to(ct)
    f_zm2, f_zp2 = tl.load(ptr + zm2).to(ct), tl.load(ptr + zp2).to(ct)
    f_xm2, f_xp2 = tl.load(ptr + xm2).to(ct), tl.load(ptr + xp2).to(ct)
    if WEIGHTED:
        f_zm1, f_zp1 = tl.load(w_ptr + zm1) * f_zm1, tl.load(w_ptr + zp1) * f_zp1
        f_xm1, f_xp1 = tl.load(w_ptr + xm1) * f_xm1, tl.load(w_ptr + xp1) * f_xp1
        f_zm2, f_zp2 = tl.load(w_ptr + zm2) * f_zm2, tl.load(w_ptr + zp2) * f_zp2
        f_xm2, f_xp2 = tl.load(w_ptr + xm2) * f_xm2, tl.load(w_ptr + xp2) * f_xp2
    return _stencil(f_zm1, f_zp1, f_xm1, f_xp1, f_zm2, f_zp2, f_xm2, f_xp2)


@triton.jit
def _source(amp_ptr, src_x_ptr, row, t, nt, s, zw, xw, sz):
    """Shot ``s``'s amplitude at step ``t`` on its source cell, 0 elsewhere (``row`` = sample * S + shot)."""
    amp = tl.load(amp_ptr + row.to(tl.int64) * nt + t)
    return tl.where((zw == sz) & (xw == tl.load(src_x_ptr + s)), amp, 0.0)


@triton.jit
def _record(rec_ptr, value, row, t, nt, NR, rc0, z, x, rz, mask):
    """Store ``value`` on row ``rz`` (columns ``rc0 ..``) as step ``t``'s traces of ``row``, where ``mask``."""
    col = tl.broadcast_to(x - rc0, value.shape)
    keep = mask & (z == rz) & (col >= 0) & (col < NR)
    tl.store(rec_ptr + (row.to(tl.int64) * nt + t) * NR + col, value, mask=keep)


@triton.jit
def _tile(W, BZ: tl.constexpr, BX: tl.constexpr):
    """This program's tile origin ``(z0, x0)``: program axis 0 walks the tiles row by row."""
    tile = tl.program_id(0)
    n_x = tl.cdiv(W, BX)
    return (tile // n_x) * BZ, (tile % n_x) * BX


@triton.jit(do_not_specialize=["t"])
def step_kernel(p_ptr, pp_ptr, out_ptr, a_ptr, b_ptr, alpha_ptr, amp_ptr, src_x_ptr, rec_ptr,
                t, nt, H, W, sz, rz, rc0, NR,
                S: tl.constexpr, BZ: tl.constexpr, BX: tl.constexpr, RECORD: tl.constexpr):
    """One time step ``t`` of every shot: ``out = (a p - b pp) + alpha n(p)`` plus the injection, recorded.

    ``out`` may be ``pp`` (in place: each cell of ``pp`` is read only by the program that overwrites it).
    Grid: ``(tiles of BZ x BX, B)``.
    """
    z0, x0 = _tile(W, BZ, BX)
    sample = tl.program_id(1)
    z = z0 + tl.arange(0, BZ)[:, None]
    x = x0 + tl.arange(0, BX)[None, :]
    inside = (z < H) & (x < W)  # lanes past the grid's end load a wrapped (valid) cell and store nothing
    zw, xw = _wrap(z, H), _wrap(x, W)
    cell, zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2 = _offsets(z, x, H, W)
    coef = sample.to(tl.int64) * H * W
    ct = a_ptr.dtype.element_ty
    a = tl.load(a_ptr + coef + cell)
    b = tl.load(b_ptr + coef + cell)
    alpha = tl.load(alpha_ptr + coef + cell)
    records = (z0 <= rz) & (rz < z0 + BZ)
    for s in tl.static_range(S):
        row = sample * S + s
        field = row.to(tl.int64) * H * W
        n = _ring(p_ptr + field, alpha_ptr, zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2, ct, False)
        p = tl.load(p_ptr + field + cell).to(ct)
        pp = tl.load(pp_ptr + field + cell).to(ct)
        nxt = (a * p - b * pp) + alpha * n
        nxt = nxt + _source(amp_ptr, src_x_ptr, row, t, nt, s, zw, xw, sz)
        tl.store(out_ptr + field + cell, nxt.to(out_ptr.dtype.element_ty), mask=inside)
        if RECORD:
            if records:
                _record(rec_ptr, nxt, row, t, nt, NR, rc0, z, x, rz, inside)


@triton.jit(do_not_specialize=["t0"])
def multistep_kernel(p_ptr, pp_ptr, p_out, pp_out, a_ptr, b_ptr, alpha_ptr, amp_ptr, src_x_ptr, rec_ptr,
                     t0, nt, H, W, sz, rz, rc0, NR,
                     S: tl.constexpr, STEPS: tl.constexpr, RZ: tl.constexpr, RX: tl.constexpr):
    """``STEPS`` time steps ``t0 ..`` of every shot in one launch (temporal blocking), recorded.

    Each program loads a region of ``RZ x RX`` cells (its tile plus a halo of ``2 STEPS`` cells: the
    stencil's reach over ``STEPS`` steps) and advances it in registers; neighbours come from in-register
    shifts (``tl.gather``), so between the region's load and the tile's store no wavefield touches memory.
    Values near the region's edge go stale by 2 cells per step and only the tile, still exact after
    ``STEPS`` steps, is stored: ``p_out, pp_out`` (must not alias the inputs). Grid: ``(tiles, B)`` with
    tiles of ``(RZ - 4 STEPS) x (RX - 4 STEPS)``.
    """
    HALO: tl.constexpr = 2 * STEPS
    TZ: tl.constexpr = RZ - 2 * HALO
    TX: tl.constexpr = RX - 2 * HALO
    z0, x0 = _tile(W, TZ, TX)
    sample = tl.program_id(1)
    i = tl.arange(0, RZ)[:, None]
    j = tl.arange(0, RX)[None, :]
    z = z0 - HALO + i  # grid coordinates of the region (before wrapping)
    x = x0 - HALO + j
    zw, xw = _wrap(z, H), _wrap(x, W)
    cell = zw * W + xw
    owned = (i >= HALO) & (i < HALO + TZ) & (j >= HALO) & (j < HALO + TX) & (z < H) & (x < W)
    # Shift indices inside the region; wrapping at its edge only touches the stale halo.
    shape: tl.constexpr = (RZ, RX)
    zm2, zm1 = tl.broadcast_to((i - 2) & (RZ - 1), shape), tl.broadcast_to((i - 1) & (RZ - 1), shape)
    zp1, zp2 = tl.broadcast_to((i + 1) & (RZ - 1), shape), tl.broadcast_to((i + 2) & (RZ - 1), shape)
    xm2, xm1 = tl.broadcast_to((j - 2) & (RX - 1), shape), tl.broadcast_to((j - 1) & (RX - 1), shape)
    xp1, xp2 = tl.broadcast_to((j + 1) & (RX - 1), shape), tl.broadcast_to((j + 2) & (RX - 1), shape)
    coef = sample.to(tl.int64) * H * W
    ct = a_ptr.dtype.element_ty
    a = tl.load(a_ptr + coef + cell)
    b = tl.load(b_ptr + coef + cell)
    alpha = tl.load(alpha_ptr + coef + cell)
    records = (z0 <= rz) & (rz < z0 + TZ)
    for s in tl.static_range(S):
        row = sample * S + s
        field = row.to(tl.int64) * H * W
        p = tl.load(p_ptr + field + cell).to(ct)
        pp = tl.load(pp_ptr + field + cell).to(ct)
        for k in tl.static_range(STEPS):
            n = _stencil(tl.gather(p, zm1, 0), tl.gather(p, zp1, 0), tl.gather(p, xm1, 1), tl.gather(p, xp1, 1),
                         tl.gather(p, zm2, 0), tl.gather(p, zp2, 0), tl.gather(p, xm2, 1), tl.gather(p, xp2, 1))
            nxt = (a * p - b * pp) + alpha * n
            nxt = nxt + _source(amp_ptr, src_x_ptr, row, t0 + k, nt, s, zw, xw, sz)
            if records:
                _record(rec_ptr, nxt, row, t0 + k, nt, NR, rc0, z, x, rz, owned)
            pp = p
            p = nxt
        tl.store(p_out + field + cell, p.to(p_out.dtype.element_ty), mask=owned)
        tl.store(pp_out + field + cell, pp.to(pp_out.dtype.element_ty), mask=owned)


@triton.jit(do_not_specialize=["k"])
def adjoint_kernel(g1_ptr, g2_ptr, out_ptr, p_ptr, pm_ptr, a_ptr, b_ptr, alpha_ptr, ga_ptr, gb_ptr, galpha_ptr,
                   grec_ptr, gamp_ptr, src_x_ptr, k, nt, H, W, sz, rz, rc0, NR,
                   S: tl.constexpr, BZ: tl.constexpr, BX: tl.constexpr):
    """Backward of step ``k`` (which made ``p_{k+1}`` from ``p_k`` and ``p_{k-1}``), all shots.

    ``g1, g2``: total gradients w.r.t. ``p_{k+1}`` and ``p_{k+2}``; ``p, pm``: the wavefields ``p_k`` and
    ``p_{k-1}``. Writes the total gradient w.r.t. ``p_k``,
    ``out = (a g1 + n(alpha g1)) - b g2 + (trace gradient of step k-1 on the receiver row)`` (``n`` is
    self-adjoint; ``out`` may be ``g2``: in place), adds step ``k``'s terms to the coefficient gradients
    ``ga += sum_s g1 p``, ``gb -= sum_s g1 pm``, ``galpha += sum_s g1 n(p)`` (``[B, H, W]``, each cell owned by
    one program) and stores the source amplitude's gradient ``gamp[:, s, k] = g1`` at the source cell.
    """
    z0, x0 = _tile(W, BZ, BX)
    sample = tl.program_id(1)
    z = z0 + tl.arange(0, BZ)[:, None]
    x = x0 + tl.arange(0, BX)[None, :]
    inside = (z < H) & (x < W)
    zw, xw = _wrap(z, H), _wrap(x, W)
    cell, zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2 = _offsets(z, x, H, W)
    coef = sample.to(tl.int64) * H * W
    ct = a_ptr.dtype.element_ty
    a = tl.load(a_ptr + coef + cell)
    b = tl.load(b_ptr + coef + cell)
    acc_a = tl.zeros((BZ, BX), ct)
    acc_b = tl.zeros((BZ, BX), ct)
    acc_alpha = tl.zeros((BZ, BX), ct)
    records = (z0 <= rz) & (rz < z0 + BZ) & (k >= 1)
    for s in tl.static_range(S):
        row = sample * S + s
        field = row.to(tl.int64) * H * W
        g1 = tl.load(g1_ptr + field + cell)
        acc_a += g1 * tl.load(p_ptr + field + cell)
        acc_b += g1 * tl.load(pm_ptr + field + cell)
        acc_alpha += g1 * _ring(p_ptr + field, alpha_ptr, zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2, ct, False)
        spread = _ring(g1_ptr + field, alpha_ptr + coef, zm1, zp1, xm1, xp1, zm2, zp2, xm2, xp2, ct, True)
        out = (a * g1 + spread) - b * tl.load(g2_ptr + field + cell)
        if records:
            col = tl.broadcast_to(x - rc0, (BZ, BX))
            on_row = inside & (z == rz) & (col >= 0) & (col < NR)
            out += tl.load(grec_ptr + (row.to(tl.int64) * nt + k - 1) * NR + col, mask=on_row, other=0.0)
        tl.store(out_ptr + field + cell, out, mask=inside)
        at_source = inside & (zw == sz) & (xw == tl.load(src_x_ptr + s))
        tl.store(gamp_ptr + row.to(tl.int64) * nt + k + tl.zeros((BZ, BX), tl.int32), g1, mask=at_source)
    tl.store(ga_ptr + coef + cell, tl.load(ga_ptr + coef + cell) + acc_a, mask=inside)
    tl.store(gb_ptr + coef + cell, tl.load(gb_ptr + coef + cell) - acc_b, mask=inside)
    tl.store(galpha_ptr + coef + cell, tl.load(galpha_ptr + coef + cell) + acc_alpha, mask=inside)
