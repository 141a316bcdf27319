"""Fit the curve law of CurveVel_A on real maps: the table behind ``fwi.synth.families._CURVE_CHOL``.

    python benchmarks/curve_stats.py --real FILE [FILE ...] [--n-synthetic N] [--seed S]

Real CurveVel_A maps hold ``k`` layers with interfaces at ``j * 70 / (k - 1)`` rows (``j = 1..k-1``), each
bent by a quadratic spline through control depths at columns 5, 15, ..., 75 (``fwi.synth.families.curve_basis``).
For every map with increasing velocities this fits the 8 control depths shared by its interfaces (least squares
over the columns where an interface is inside the window, so maps whose curves leave the window count too), in
units of the layer spacing, and prints:

- how well one spline explains each fully visible interface (rms residual, rows; pixel rounding alone: 0.29);
- the std of each control depth and the correlation of neighbouring ones, real and synthetic (``generate``);
- the Cholesky factor of the real covariance, as the Python literal ``_CURVE_CHOL`` holds.

``FILE``: ``.npy`` / ``.npz`` (key ``velocity``) velocity files, ``(N, 1, 70, 70)`` or ``(N, 70, 70)`` m/s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fwi.cli import main_guard
from fwi.errors import FwiError
from fwi.physics.acquisition import NX, NZ
from fwi.synth.families import CURVE_COLUMNS, curve_basis, generate
from fwi.synth.writer import load_velocity_file

BASIS = curve_basis(torch.arange(NX)).numpy()
"""``[70, 8]`` interpolation weights of the control depths."""


def interface_rows(m: np.ndarray) -> list[np.ndarray]:
    """Row of each interface of a map with increasing velocities, per column: ``k - 1`` arrays ``[70]``."""
    values = np.unique(m)
    return [(m < v).sum(0).astype(np.float64) for v in values[1:]]


def fit_controls(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Control depths ``[m, 8]`` (layer spacings) of the increasing maps among ``maps`` ``[n, 70, 70]``, and the rms
    residual (rows) of each fully visible interface fitted on its own by one spline."""
    controls, residuals = [], []
    q, _ = np.linalg.qr(np.column_stack([np.ones(NX), BASIS]))
    for m in maps:
        if (np.diff(m, axis=0) < 0).any():
            continue
        rows = interface_rows(m)
        spacing = NZ / len(rows)
        a, b = [], []
        for j, z in enumerate(rows, 1):
            inside = (z > 0) & (z < NZ)  # rows 0 / 70: the interface left the window there
            a.append(BASIS[inside])
            b.append(z[inside] - j * spacing)
            if inside.all():
                residuals.append(np.sqrt(((z - q @ (q.T @ z)) ** 2).mean()))
        a, b = np.concatenate(a), np.concatenate(b)
        controls.append(np.linalg.lstsq(a, b, rcond=None)[0] / spacing)
    return np.array(controls).reshape(-1, len(CURVE_COLUMNS)), np.array(residuals)


def summary(controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Std of each control depth ``[8]`` and correlation of neighbouring ones ``[7]``."""
    corr = np.corrcoef(controls.T)
    return controls.std(0), np.diag(corr, 1)


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", nargs="+", required=True, type=Path, help="real CurveVel_A velocity files")
    parser.add_argument("--n-synthetic", type=int, default=2000, help="synthetic maps to compare (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    maps = np.concatenate([load_velocity_file(p) for p in args.real]).astype(np.float64)
    real, residual = fit_controls(maps)
    if len(real) < 10:
        raise FwiError(f"{len(real)} maps with increasing velocities in --real; need at least 10 CurveVel_A maps")
    synthetic, _ = fit_controls(generate("CurveVel_A", args.n_synthetic, args.seed).numpy().astype(np.float64))
    print(f"{len(real)} real maps; one spline per fully visible interface: rms residual median "
          f"{np.median(residual):.2f} rows, 90 % {np.quantile(residual, 0.9):.2f} (pixel rounding alone: 0.29)\n")
    print("| control column | " + " | ".join(f"{c:.0f}" for c in CURVE_COLUMNS) + " |")
    print("|---|" + "---|" * len(CURVE_COLUMNS))
    for name, c in (("real", real), (f"synthetic (seed {args.seed})", synthetic)):
        std, corr = summary(c)
        print(f"| std, spacings: {name} | " + " | ".join(f"{v:.3f}" for v in std) + " |")
        print(f"| corr with next: {name} | " + " | ".join(f"{v:+.2f}" for v in corr) + " | |")
    chol = np.linalg.cholesky(np.cov(real.T))
    print("\n_CURVE_CHOL = (\n" + "".join(f"    ({', '.join(f'{v:.3f}' for v in row)}),\n" for row in chol) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
