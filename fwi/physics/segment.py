"""Piecewise-constant segmentations of velocity maps: the starting structure of the refinement priors.

A network's prediction of a layered or faulted map is the true map blurred at its interfaces plus a smooth
velocity error. Both vanish when the map is replaced by one constant per region of the true map, so the
refinement fits region values (and moves region boundaries) instead of 4,900 free pixels:

- :func:`potts_1d` splits a depth profile ``[nz]`` into constant segments (exact dynamic programme for
  the 1-D Potts model: least squares plus a fixed cost per segment); :func:`layer_edges` then folds the
  short segments of blurred ramps into the layers around them; this starts the flat-layer prior.
- :func:`segment_regions` labels a map ``[nz, nx]`` into connected regions of similar velocity (levels
  from the modes of the map's smoothed velocity histogram, connected components of each level, small
  components merged into their closest neighbour); it starts the region prior of curved maps.
- :func:`fault_blocks` splits a faulted map by up to two straight fault lines into blocks, each of which
  is flat-layered (one velocity per row); it starts the block prior of faulted maps.

Everything here is numpy on one map; units are m/s and grid points.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

LEVEL_BANDWIDTH = 6.0
"""Gaussian bandwidth (m/s) of the velocity histogram whose modes are the levels of :func:`segment_regions`.
Small on purpose: two true layers merged into one level cost far more than one layer split in two (the
refinement fits every region's value, and merging is cheap)."""

MIN_LAYER = 3
"""Segments of :func:`layer_edges` shorter than this (rows) are ramps, not layers."""

MIN_REGION = 12
"""Regions of fewer cells are merged into a neighbour (the ramps of blurred interfaces, noise)."""

MAX_FAULTS = 2
"""Fault lines :func:`fault_blocks` looks for (real FlatFault_A maps have one or two)."""

FAULT_GAIN = 0.5
"""A fault line is kept when it at least halves the squared error of the one-velocity-per-row-of-each-block
fit of the map (see :func:`fault_blocks`)."""

FAULT_REACH = 40
"""Fault lines are searched with their ends up to this many columns outside the map (low-angle faults
leave through a side)."""


def potts_1d(profile: np.ndarray, penalty: float) -> list[int]:
    """Optimal piecewise-constant fit of ``profile`` ``[n]`` (m/s): the segment edges ``[0, e1, ..., n]``.

    Minimises ``sum over segments of sum (p - mean)^2 + penalty * (number of segments)`` exactly by dynamic
    programming (``O(n^2)`` time and memory). ``penalty`` (m/s squared) sets how large a step must be to
    become an edge: a step of height ``h`` between two long segments of ``m`` rows saves ``~m h^2 / 2``.
    """
    p = np.asarray(profile, dtype=np.float64)
    n = len(p)
    sse = _segment_costs(p[None])[0]  # sse[i, j]: cost of the segment p[i:j]
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    prev = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        total = best[:j] + sse[:j, j] + penalty
        k = int(np.argmin(total))
        best[j], prev[j] = total[k], k
    edges = [n]
    while edges[-1] > 0:
        edges.append(int(prev[edges[-1]]))
    return edges[::-1]


def layer_edges(profile: np.ndarray, penalty: float, min_rows: int = MIN_LAYER) -> list[int]:
    """Layer edges of a depth profile ``[n]`` (m/s): :func:`potts_1d`, then segments shorter than ``min_rows``
    (the ramps of blurred interfaces) split between the longer segments around them.

    Each run of short segments between two long ones is cut where the rows above are closest to the upper
    segment's median and the rows below to the lower one's (least absolute error); a run at the top or
    bottom joins its one neighbour.
    """
    p = np.asarray(profile, dtype=np.float64)
    edges = potts_1d(p, penalty)
    spans = list(itertools.pairwise(edges))
    long = [(a, b) for a, b in spans if b - a >= min_rows]
    if not long:
        return edges
    cuts = []
    for (a0, b0), (a1, b1) in itertools.pairwise(long):  # the rows b0..a1 lie between two long segments
        m0, m1 = np.median(p[a0:b0]), np.median(p[a1:b1])
        run = p[b0:a1]
        cost = [np.abs(run[:k] - m0).sum() + np.abs(run[k:] - m1).sum() for k in range(len(run) + 1)]
        cuts.append(b0 + int(np.argmin(cost)))
    return [0, *cuts, len(p)]


def velocity_levels(v: np.ndarray, bandwidth: float = LEVEL_BANDWIDTH) -> np.ndarray:
    """Thresholds (m/s, ascending) between the modes of the Gaussian-smoothed histogram of ``v``'s values."""
    lo, hi = float(v.min()) - 4 * bandwidth, float(v.max()) + 4 * bandwidth
    counts, edges = np.histogram(v, bins=max(1, int(np.ceil(hi - lo))), range=(lo, hi))  # 1 m/s bins
    density = ndimage.gaussian_filter1d(counts.astype(np.float64), bandwidth * len(counts) / (hi - lo))
    centres = 0.5 * (edges[1:] + edges[:-1])
    rising = np.diff(density) > 0
    peaks = np.flatnonzero(rising[:-1] & ~rising[1:]) + 1  # local maxima
    return np.array([centres[a + np.argmin(density[a:b])] for a, b in zip(peaks[:-1], peaks[1:], strict=True)])


def _segment_costs(v: np.ndarray) -> np.ndarray:
    """``cost[r, i, j]``: squared error of row ``r`` of ``v`` ``[nz, nx]`` over columns ``i..j-1`` about their
    mean (0 when ``j <= i``), ``[nz, nx + 1, nx + 1]``."""
    s1 = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v, axis=1)], axis=1)
    s2 = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v * v, axis=1)], axis=1)
    n = np.arange(v.shape[1] + 1)
    count = n[None, :] - n[:, None]  # [i, j]
    total = s1[:, None, :] - s1[:, :, None]
    cost = s2[:, None, :] - s2[:, :, None] - total**2 / np.maximum(count, 1)
    return np.where(count > 0, cost, 0.0)


def line_columns(lines: np.ndarray, nz: int, nx: int) -> np.ndarray:
    """Per row, the first column right of each line: ``[L, nz]`` ints in ``0..nx``.

    A line ``(a, b)`` runs from column ``a`` at row 0 to column ``b`` at row ``nz - 1`` (fractional, may lie
    outside the map); cell ``(r, x)`` is left of it when its centre ``x + 0.5`` is.
    """
    lines = np.asarray(lines, dtype=np.float64).reshape(-1, 2)
    at = lines[:, :1] + (lines[:, 1:] - lines[:, :1]) * np.arange(nz)[None, :] / max(nz - 1, 1)
    return np.clip(np.ceil(at - 0.5), 0, nx).astype(np.int64)


def fault_blocks(v: np.ndarray, *, max_faults: int = MAX_FAULTS, gain: float = FAULT_GAIN,
                 reach: int = FAULT_REACH) -> tuple[np.ndarray, np.ndarray]:
    """Fault lines of ``v`` ``[nz, nx]`` (m/s) and the blocks they cut: ``(lines [L, 2], labels [nz, nx])``.

    A faulted flat-layered map is one velocity per row within each block between its fault lines. Lines
    are added greedily, each the best of every straight line with whole-column ends in ``[-reach, nx - 1 +
    reach]`` (exhaustive, by prefix sums: ~0.1 s), scored by the squared error of the per-row, per-block
    mean fit; a line is kept while it cuts that error by at least the factor ``gain``. Labels number the
    blocks (cells on the same side of every line) ``0..B-1`` in raster order of their first cell.
    """
    v = np.asarray(v, dtype=np.float64)
    nz, nx = v.shape
    costs = _segment_costs(v)
    rows = np.arange(nz)
    ends = np.arange(-reach, nx + reach)
    grid = np.stack(np.meshgrid(ends, ends, indexing="ij"), axis=-1).reshape(-1, 2)  # [C, 2]
    cols = line_columns(grid, nz, nx)  # [C, nz]
    kept = np.zeros((0, 2))
    best = costs[:, 0, nx].sum()
    for _ in range(max_faults):
        cuts = np.sort(np.concatenate([np.broadcast_to(line_columns(kept, nz, nx)[:, None], (len(kept), *cols.shape)),
                                       cols[None], np.zeros((1, *cols.shape), np.int64),
                                       np.full((1, *cols.shape), nx)]), axis=0)  # [L + 3, C, nz]
        total = costs[rows, cuts[:-1], cuts[1:]].sum(axis=(0, 2))  # [C]
        c = int(np.argmin(total))
        if total[c] >= gain * best:  # (an exact fit gains nothing from another line)
            break
        kept, best = np.concatenate([kept, grid[c : c + 1]]), total[c]
    side = np.zeros((nz, nx), dtype=np.int64)
    for bit, col in enumerate(line_columns(kept, nz, nx)):
        side += (np.arange(nx)[None, :] < col[:, None]) << bit
    return kept, _raster_labels(side)


def _raster_labels(ids: np.ndarray) -> np.ndarray:
    """``ids`` (any ints) renumbered ``0..K-1`` in raster order of each id's first cell, same shape."""
    _, first, inverse = np.unique(ids.ravel(), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # rank of each id's first cell in raster order
    return order[inverse].reshape(ids.shape)


def segment_regions(v: np.ndarray, *, bandwidth: float = LEVEL_BANDWIDTH, min_region: int = MIN_REGION) -> np.ndarray:
    """Label ``v`` ``[nz, nx]`` (m/s) into connected regions of similar velocity: int labels ``0..K-1``.

    Each cell gets the level of :func:`velocity_levels` it falls in; each 4-connected component of a level
    is a region; regions smaller than ``min_region`` cells are merged, smallest first, into the adjacent
    region whose mean velocity is closest. Labels are numbered in raster order of their first cell, so the
    result depends on ``v`` alone.
    """
    labels = _components(np.searchsorted(velocity_levels(v, bandwidth), v))
    return _merge_small(_components(_dissolve_thin(labels, v)), v, min_region)


def _components(level: np.ndarray) -> np.ndarray:
    """Distinct labels for the 4-connected components of each value of ``level`` ``[nz, nx]``."""
    labels = np.zeros(level.shape, dtype=np.int64)
    n = 0
    for lev in np.unique(level):
        comp, k = ndimage.label(level == lev)
        labels[comp > 0] = comp[comp > 0] + n
        n += k
    return labels


def _dissolve_thin(labels: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hand the cells of thin regions (nothing left after a 3 x 3 erosion) to the adjacent thick regions.

    A blurred interface between two levels leaves strips 1-2 cells wide at the levels in between; as
    regions of their own they would take any value the misfit likes. Each connected group of thin cells is
    split among the thick regions it touches: every cell goes to the one whose median is closest to the
    cell's velocity, which puts the interface where the blurred profile crosses the midpoint.
    """
    thick = [k for k in np.unique(labels) if ndimage.binary_erosion(labels == k).any()]
    if not thick:
        return labels
    is_thick = np.isin(labels, thick)
    groups, n_groups = ndimage.label(~is_thick)
    out = labels.copy()
    for g in range(1, n_groups + 1):
        cells = groups == g
        touching = np.unique(labels[ndimage.binary_dilation(cells) & is_thick])
        if not len(touching):
            continue
        medians = np.array([np.median(v[labels == k]) for k in touching])
        out[cells] = touching[np.abs(v[cells][:, None] - medians[None, :]).argmin(axis=1)]
    return out


def _merge_small(labels: np.ndarray, v: np.ndarray, min_region: int) -> np.ndarray:
    """Merge regions under ``min_region`` cells into their closest-valued neighbour; relabel ``0..K-1``."""
    ids = np.unique(labels)
    size = {int(i): int(c) for i, c in zip(*np.unique(labels, return_counts=True), strict=True)}
    total = {int(i): float(v[labels == i].sum()) for i in ids}
    neighbours: dict[int, set[int]] = {int(i): set() for i in ids}
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        differ = a != b
        for x, y in set(zip(a[differ].tolist(), b[differ].tolist(), strict=True)):
            neighbours[x].add(y)
            neighbours[y].add(x)
    parent = {int(i): int(i) for i in ids}
    while True:
        small = [i for i in size if size[i] < min_region and neighbours[i]]
        if not small:
            break
        i = min(small, key=lambda r: (size[r], r))
        mean = total[i] / size[i]
        j = min(neighbours[i], key=lambda r: (abs(total[r] / size[r] - mean), r))
        parent[i] = j  # fold i into j
        size[j] += size.pop(i)
        total[j] += total.pop(i)
        for r in neighbours.pop(i):
            neighbours[r].discard(i)
            if r != j:
                neighbours[r].add(j)
                neighbours[j].add(r)

    def root(r: int) -> int:
        while parent[r] != r:
            r = parent[r]
        return r

    return _raster_labels(np.vectorize(root, otypes=[np.int64])(labels))
