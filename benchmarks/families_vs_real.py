"""Compare synthetic velocity families with real OpenFWI maps; prints markdown tables.

    python benchmarks/families_vs_real.py [--n 500] [--seed 0]

Real references: ``tests/data/velocity_{FlatVelA,CurveVelA,FlatFaultA}.npz`` (500 maps each). For each A family
with a reference the first table gives real and synthetic statistics side by side and two distances with a
baseline (the same distance between the two halves of the real set, i.e. what sampling noise alone gives):

- distinct/col: mean number of distinct values per column (``raw``, and after rounding to 1 m/s: the real fault
  maps carry sub-1 m/s interpolation residues that inflate the raw count);
- mean, std: velocity over all pixels, m/s;
- W1: Wasserstein-1 distance between the pixel-velocity distributions, m/s;
- depth: max over rows of |mean velocity at that depth (real) - (synthetic)|, m/s;
- curved: fraction of maps whose rows are not all constant;
- faulted: fraction of maps where an iso-velocity contour steps by >= 4 rows between two flat 8-column
  stretches (a fault cutting flat layers; strong bends of curved layers can look alike);
- same cols: fraction of adjacent column pairs equal within 5 m/s in every row (how much of a fault map the
  faults leave untouched);
- lat. jumps: fraction of horizontally adjacent pixel pairs differing by > 100 m/s.

The second table gives the same statistics for the synthetic-only families.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fwi.synth.families import FAMILIES, generate

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
REAL = {"FlatVel_A": "FlatVelA", "CurveVel_A": "CurveVelA", "FlatFault_A": "FlatFaultA"}


def load_real(family: str) -> np.ndarray:
    """Real maps of ``family``: float32 ``[500, 70, 70]`` m/s."""
    return np.load(DATA / f"velocity_{REAL[family]}.npz")["velocity"][:, 0]


def distinct_per_column(maps: np.ndarray, resolution: float | None = None) -> float:
    """Mean number of distinct values per column of ``[n, H, W]`` maps (optionally after rounding)."""
    v = maps if resolution is None else np.round(maps / resolution)
    s = np.sort(v, axis=1)
    return float((1 + (np.diff(s, axis=1) != 0).sum(axis=1)).mean())


def fault_fraction(maps: np.ndarray, step: float = 4.0, window: int = 8, gap: int = 5) -> float:
    """Fraction of maps in which an iso-velocity contour steps by >= ``step`` rows between two flat stretches.

    For thresholds at the 20/40/60/80 % quantiles of each map, ``c(x)`` = rows slower than the threshold in
    column ``x``; a step is ``|mean(right) - mean(left)| >= step`` for two ``window``-column stretches ``gap``
    columns apart (room for a dipping fault's ramp), each varying by at most 1 row. Curved layers trigger it
    only where a bend looks like a step; flat layers never.
    """
    q = np.quantile(maps.reshape(len(maps), -1), [0.2, 0.4, 0.6, 0.8], axis=1).T  # [n, 4]
    c = (maps[:, None] < q[:, :, None, None]).sum(axis=2).astype(np.float32)  # [n, 4, W]
    win = np.lib.stride_tricks.sliding_window_view(c, window, axis=2)  # [n, 4, W - window + 1, window]
    left, right = win[:, :, : -(window + gap)], win[:, :, window + gap :]
    jump = np.abs(right.mean(-1) - left.mean(-1)) >= step
    steady = (np.ptp(left, axis=-1) <= 1) & (np.ptp(right, axis=-1) <= 1)
    return float((jump & steady).any(axis=(1, 2)).mean())


def same_columns(maps: np.ndarray, tol: float = 5.0) -> float:
    """Mean fraction of adjacent column pairs that agree within ``tol`` m/s in every row (1 for flat layers)."""
    return float((np.abs(np.diff(maps, axis=2)).max(axis=1) < tol).mean())


def stats(maps: np.ndarray) -> dict[str, float]:
    """Summary statistics of ``[n, 70, 70]`` maps (see the module docstring)."""
    return {
        "distinct": distinct_per_column(maps),
        "distinct_1": distinct_per_column(maps, 1.0),
        "mean": float(maps.mean()),
        "std": float(maps.std()),
        "curved": float((maps != maps[:, :, :1]).any(axis=(1, 2)).mean()),
        "faulted": fault_fraction(maps),
        "same": same_columns(maps),
        "lateral": float((np.abs(np.diff(maps, axis=2)) > 100).mean()),
    }


def w1(a: np.ndarray, b: np.ndarray, points: int = 2001) -> float:
    """Wasserstein-1 distance between the value distributions of two arrays (quantile form), m/s."""
    p = np.linspace(0, 1, points)
    return float(np.abs(np.quantile(a, p) - np.quantile(b, p)).mean())


def depth_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Max over depth of |row-mean velocity of a - of b|, m/s."""
    return float(np.abs(a.mean(axis=(0, 2)) - b.mean(axis=(0, 2))).max())


def row(name: str, s: dict[str, float], extra: list[str]) -> str:
    cells = [
        name,
        f"{s['distinct']:.2f}",
        f"{s['distinct_1']:.2f}",
        f"{s['mean']:.0f}",
        f"{s['std']:.0f}",
        *extra,
        f"{s['curved']:.2f}",
        f"{s['faulted']:.2f}",
        f"{s['same']:.2f}",
        f"{s['lateral']:.4f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="synthetic maps per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    start = time.perf_counter()
    synth, rate = {}, {}
    for family in FAMILIES:
        t = time.perf_counter()
        synth[family] = generate(family, args.n, args.seed).numpy()
        rate[family] = args.n / (time.perf_counter() - t)

    print("### Synthetic A families vs real OpenFWI maps (500 real maps each)\n")
    print(
        "| family | distinct/col | distinct/col (1 m/s) | mean | std | W1 (real halves) | depth gap (real halves)"
        " | curved | faulted | same cols | lat. jumps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for family in REAL:
        real, fake = load_real(family), synth[family]
        h = len(real) // 2
        w1_base, depth_base = w1(real[:h], real[h:]), depth_gap(real[:h], real[h:])
        print(row(f"{family} real", stats(real), [f"({w1_base:.0f})", f"({depth_base:.0f})"]))
        print(row(f"{family} synth", stats(fake), [f"{w1(real, fake):.0f}", f"{depth_gap(real, fake):.0f}"]))

    print("\n### Synthetic-only families (no real reference here)\n")
    print(
        "| family | distinct/col | distinct/col (1 m/s) | mean | std | maps/s | curved | faulted | same cols"
        " | lat. jumps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for family in FAMILIES:
        if family not in REAL:
            print(row(family, stats(synth[family]), [f"{rate[family]:.0f}"]))
    print(
        f"\nGeneration rate, maps/s (CPU, {torch.get_num_threads()} threads, n={args.n}): "
        + ", ".join(f"{f} {rate[f]:.0f}" for f in REAL)
        + f". Total time {time.perf_counter() - start:.1f} s."
    )


if __name__ == "__main__":
    main()
