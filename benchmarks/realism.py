"""Realism of the synthetic velocity families: can a classifier tell generated maps from real ones?

    python benchmarks/realism.py --real ROOT_OR_FILE [--real ...] [--families F,...] [--n N] [--seed S]
                                 [--half all|even|odd] [--explain K] [--out DIR]
    python benchmarks/realism.py --speed N [--families F,...] [--seed S]

``--real`` takes a Kaggle root (``train_samples/<family>/``), a folder of family folders or one family folder
(found by ``fwi.data``'s layout discovery: ``model/modelN.npy`` or ``velK.npy``, all ten families), or velocity
files (``.npy`` / ``.npz`` with key ``velocity``, ``(N, 1, 70, 70)`` or ``(N, 70, 70)`` m/s) given as
``FAMILY=PATH`` or as a path whose name contains the family (``velocity_FlatVelA.npz`` -> FlatVel_A). For each
family with real maps (at most ``--n`` of them, taken evenly from all files; ``--half even|odd`` keeps every
other one, so generators can be tuned on one half and checked on the other) it generates as many synthetic maps
and prints one table row:

- **AUC**: a 5-fold cross-validated classifier of synthetic vs real maps on ~170 simple map features (value
  quantiles, distinct values per column, layer thicknesses, interface tilt / swing / roughness / spectrum and how
  neighbouring interfaces follow each other, vertical and lateral jumps, fault lines and dips, sub-pixel blur, FFT
  energy, monotonicity with depth); the larger AUC of gradient-boosted trees and of logistic regression on
  standardized features. 0.5: indistinguishable, 1.0: always told apart. ``control``: the same classifier on
  the two halves of the real maps (what sampling noise alone gives); ``augmented``: synthetic maps after the
  default velocity augmentation (``fwi.synth.augment.VelocityAugment()``).
- **W1**: Wasserstein-1 distance between the pixel-velocity histograms, m/s (control: real halves).
- **coverage**: share of real maps (first half) whose nearest synthetic map (L1 over pixels) is closer than their
  nearest other real map; ~0.5 when synthetic maps are as diverse as real ones, lower when they miss kinds of real
  maps (control: the second real half in place of the synthetic maps).
- **maps/s**: generation rate of ``fwi.synth.generate`` on this machine's CPU.

``--speed N`` only times ``fwi.synth.generate``: N maps of each family (default: all ten), CPU, one thread, after a
warm-up call; no real maps needed.

``--explain K`` also prints, per family, the K features that alone tell synthetic from real maps best (their
single-feature AUC and mean values): where a generator falls short.

``--out DIR`` writes ``realism.md`` (the table) and ``realism.png`` (real and synthetic maps of each family side
by side on one colour scale). Needs scikit-learn: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from fwi.cli import main_guard
from fwi.data.layout import discover_families
from fwi.errors import FwiError
from fwi.io import atomic_path, save_text
from fwi.physics.acquisition import FAMILIES, VMAX, VMIN
from fwi.synth.augment import augment
from fwi.synth.families import generate
from fwi.synth.writer import load_velocity

FOLDS = 5
"""Cross-validation folds of the classifiers."""


# ---------------------------------------------------------------------------------------------- features


def _contours(maps: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Depth (rows) of iso-velocity levels per column: ``[n, L, W]`` = rows slower than ``levels[:, l]``.

    ``maps`` ``[n, H, W]`` m/s, ``levels`` ``[n, L]`` m/s. On layered maps each contour is one interface.
    """
    return (maps[:, None] < levels[:, :, None, None]).sum(2).astype(np.float64)


def _curve_features(c: np.ndarray) -> dict[str, np.ndarray]:
    """Shape statistics of curves ``c`` ``[n, L, W]`` (rows per column), averaged over the L curves: ``[n]`` each."""
    w = c.shape[-1]
    x = np.arange(w) - (w - 1) / 2
    tilt = (c * x).sum(-1) / (x**2).sum() * (w - 1)  # left-right offset of the least-squares line, rows
    detrended = c - c.mean(-1, keepdims=True) - tilt[..., None] * x / (w - 1)
    d1, d2 = np.diff(c, axis=-1), np.diff(c, 2, axis=-1)
    turns = (np.sign(d1[..., 1:]) * np.sign(d1[..., :-1]) < 0).sum(-1)  # direct up/down reversals
    spec = np.abs(np.fft.rfft(detrended, axis=-1)) ** 2
    total = spec[..., 1:].sum(-1) + 1e-9
    out = {
        "std": c.std(-1), "ptp": np.ptp(c, -1), "abs_tilt": np.abs(tilt), "resid_std": detrended.std(-1),
        "mean_abs_d1": np.abs(d1).mean(-1), "max_abs_d1": np.abs(d1).max(-1), "mean_abs_d2": np.abs(d2).mean(-1),
        "flat_d1": (d1 == 0).mean(-1), "turns": turns,
        "spec_low": spec[..., 1:3].sum(-1) / total, "spec_mid": spec[..., 3:6].sum(-1) / total,
        "spec_high": spec[..., 6:].sum(-1) / total,
        # real CurveVel_A curves swing harder towards one side: slope in the right third over the left third
        "right_over_left": np.log((np.abs(d1[..., -w // 3 :]).mean(-1) + 0.1)
                                  / (np.abs(d1[..., : w // 3]).mean(-1) + 0.1)),
    }
    return {k: v.mean(-1) for k, v in out.items()}


def map_features(maps: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Feature names and values ``[n, F]`` of velocity maps ``[n, H, W]`` (m/s) for the realism classifiers."""
    with warnings.catch_warnings():  # all-NaN rows (maps without lateral jumps) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return _map_features(np.asarray(maps, dtype=np.float64))


def _map_features(v: np.ndarray) -> tuple[list[str], np.ndarray]:
    n, h, w = v.shape
    f: dict[str, np.ndarray] = {}
    flat = v.reshape(n, -1)
    for q, val in zip((0, 5, 10, 25, 50, 75, 90, 95, 100), np.percentile(flat, (0, 5, 10, 25, 50, 75, 90, 95, 100),
                                                                       axis=1), strict=True):
        f[f"value_q{q}"] = val
    f["value_std"] = flat.std(1)
    for b in range(7):
        f[f"band{b}_mean"] = v[:, b * h // 7 : (b + 1) * h // 7].mean((1, 2))
    # discreteness: distinct values, integer pixels
    f["integer_px"] = (v == np.round(v)).mean((1, 2))
    f["log_distinct"] = np.log1p([len(np.unique(m)) for m in v])
    s = np.sort(v, axis=1)
    distinct_col = 1 + (np.diff(s, axis=1) != 0).sum(1)  # [n, W]
    f["distinct_col_mean"], f["distinct_col_max"] = distinct_col.mean(1), distinct_col.max(1)
    f["distinct_col_std"] = distinct_col.std(1)
    s1 = np.sort(np.round(v), axis=1)
    f["distinct_col_1ms"] = (1 + (np.diff(s1, axis=1) != 0).sum(1)).mean(1)
    # vertical and lateral steps
    dz, dx = np.diff(v, axis=1), np.diff(v, axis=2)
    for name, d in (("dz", dz), ("dx", dx)):
        a = np.abs(d)
        f[f"{name}_nonzero"] = (a > 0.5).mean((1, 2))
        f[f"{name}_small"] = ((a > 0.5) & (a <= 20)).mean((1, 2))
        f[f"{name}_mid"] = ((a > 20) & (a <= 100)).mean((1, 2))
        f[f"{name}_big"] = (a > 100).mean((1, 2))
        f[f"{name}_mean_abs"] = a.mean((1, 2))
        nz = np.where(a > 0.5, a, np.nan)
        f[f"{name}_median_step"] = np.nan_to_num(np.nanmedian(nz.reshape(n, -1), 1))
    f["dz_negative"] = (dz < -0.5).mean((1, 2))
    f["dz_negative_big"] = (dz < -50).mean((1, 2))
    f["monotone_cols"] = (dz >= -0.5).all(1).mean(1)
    f["monotone_map"] = (dz >= -0.5).all((1, 2)).astype(np.float64)
    f["same_cols"] = (np.abs(dx).max(1) < 1).mean(1)
    f["const_rows"] = (np.abs(dx).max(2) < 1).mean(1)
    # sub-pixel blur: pixels strictly between both vertical (lateral) neighbours
    up, mid, down = v[:, :-2], v[:, 1:-1], v[:, 2:]
    f["between_z"] = ((mid > np.minimum(up, down) + 0.5) & (mid < np.maximum(up, down) - 0.5)).mean((1, 2))
    le, mi, ri = v[:, :, :-2], v[:, :, 1:-1], v[:, :, 2:]
    f["between_x"] = ((mi > np.minimum(le, ri) + 0.5) & (mi < np.maximum(le, ri) - 0.5)).mean((1, 2))
    # layers along columns: interfaces = vertical steps > 20 m/s
    step = np.abs(dz) > 20
    count = step.sum(1)  # [n, W]
    f["interfaces_mean"], f["interfaces_std"] = count.mean(1), count.std(1)
    f["interfaces_min"], f["interfaces_max"] = count.min(1), count.max(1)
    rows = np.arange(1, h)[None, :, None]
    first = np.where(step, rows, h).min(1)
    last = h - np.where(step, rows, 0).max(1)
    f["first_layer_mean"], f["first_layer_std"] = first.mean(1), first.std(1)
    f["last_layer_mean"], f["last_layer_std"] = last.mean(1), last.std(1)
    thick_cv, thick_mean, inner_cv = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):  # thickness of the layers crossed by each column (runs between interfaces)
        cvs, means, inner = [], [], []
        for col in (0, w // 4, w // 2, 3 * w // 4, w - 1):
            edges = np.concatenate(([0], np.nonzero(step[i, :, col])[0] + 1, [h]))
            t = np.diff(edges)
            means.append(t.mean())
            cvs.append(t.std() / t.mean())
            inner.append(t[1:-1].std() / t[1:-1].mean() if len(t) > 3 else 0.0)
        thick_cv[i], thick_mean[i], inner_cv[i] = np.mean(cvs), np.mean(means), np.mean(inner)
    f["thick_cv"], f["thick_mean"], f["inner_thick_cv"] = thick_cv, thick_mean, inner_cv
    # interface geometry: contours at velocity quantiles and between neighbouring distinct layers
    levels = np.percentile(flat, (15, 30, 45, 60, 75, 90), axis=1).T  # [n, 6]
    c = _contours(v, levels)
    for k, val in _curve_features(c).items():
        f[f"curve_{k}"] = val
    shallow, deep = c[:, :3], c[:, 3:]
    f["curve_deep_over_shallow"] = np.log((deep.std(-1).mean(1) + 0.5) / (shallow.std(-1).mean(1) + 0.5))
    a, b = c[:, :-1] - c[:, :-1].mean(-1, keepdims=True), c[:, 1:] - c[:, 1:].mean(-1, keepdims=True)
    corr = (a * b).sum(-1) / np.sqrt((a**2).sum(-1) * (b**2).sum(-1) + 1e-9)
    f["curve_neighbour_corr"] = corr.mean(1)
    f["curve_neighbour_gap_std"] = np.diff(c, axis=1).std(-1).mean(1)
    # faults: lateral jumps (> 50 m/s) per row, their positions and dips
    jump = np.abs(dx) > 50  # [n, H, W-1]
    per_row = jump.sum(2)
    f["jump_rows"] = (per_row > 0).mean(1)
    f["jump_rows_2plus"] = (per_row > 1).mean(1)
    f["jump_per_row"] = per_row.mean(1)
    f["jump_cols"] = jump.any(1).mean(1)
    pos = np.where(jump, np.arange(w - 1)[None, None, :], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.nanmean(pos, 2)  # [n, H] mean jump column per row
        zz = np.arange(h)[None, :] - (h - 1) / 2
        ok = ~np.isnan(centre)
        cnt = ok.sum(1)
        cz = np.where(ok, zz, 0.0)
        cx = np.where(ok, centre, 0.0)
        mz, mx = cz.sum(1) / np.maximum(cnt, 1), cx.sum(1) / np.maximum(cnt, 1)
        var_z = (np.where(ok, (zz - mz[:, None]) ** 2, 0)).sum(1)
        slope = (np.where(ok, (zz - mz[:, None]) * (centre - mx[:, None]), 0)).sum(1) / np.maximum(var_z, 1e-9)
        resid = np.where(ok, centre - mx[:, None] - slope[:, None] * (zz - mz[:, None]), 0)
        f["fault_spread"] = np.nan_to_num(np.nanstd(pos.reshape(n, -1), 1))
    f["fault_centre"] = np.where(cnt > 0, mx, (w - 1) / 2)
    f["fault_abs_slope"] = np.where(cnt > 3, np.abs(slope), 0.0)
    f["fault_resid"] = np.where(cnt > 3, np.sqrt((resid**2).sum(1) / np.maximum(cnt, 1)), 0.0)
    # 2-D spectrum of the standardized map: energy in radial bands and along each axis
    z = (v - v.mean((1, 2), keepdims=True)) / (v.std((1, 2), keepdims=True) + 1e-9)
    p = np.abs(np.fft.rfft2(z)) ** 2
    kz = np.abs(np.fft.fftfreq(h))[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(kz**2 + kx**2)
    tot = p.sum((1, 2)) + 1e-9
    for lo, hi in ((0, 0.03), (0.03, 0.08), (0.08, 0.16), (0.16, 0.3), (0.3, 1.0)):
        f[f"fft_{lo}"] = p[:, (r >= lo) & (r < hi)].sum(1) / tot
    f["fft_x_axis"] = p[:, 0, 1:].sum(1) / tot
    f["fft_z_axis"] = p[:, 1:, 0].sum(1) / tot
    names = list(f)
    return names, np.stack([np.asarray(f[k], dtype=np.float64) for k in names], 1)


# ---------------------------------------------------------------------------------------------- metrics


def classifier_auc(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """Cross-validated AUC of telling ``fake`` from ``real`` feature rows; the larger of two classifiers.

    Gradient-boosted trees and L2 logistic regression on standardized features, out-of-fold probabilities over
    :data:`FOLDS` stratified folds. Symmetric: an AUC below 0.5 is reported as ``1 - AUC``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([real, fake])
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    models = (
        HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, max_leaf_nodes=15, random_state=seed),
        make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)),
    )
    aucs = []
    for model in models:
        prob = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
        auc = roc_auc_score(y, prob)
        aucs.append(max(auc, 1 - auc))
    return float(max(aucs))


def tells(names: list[str], real: np.ndarray, fake: np.ndarray, k: int) -> list[tuple[str, float, float, float]]:
    """The ``k`` features that alone separate ``fake`` from ``real`` feature rows best: ``(name, AUC, real mean,
    synthetic mean)``, highest AUC first (symmetric, as :func:`classifier_auc`)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    x = np.concatenate([real, fake])
    aucs = [roc_auc_score(y, x[:, j]) for j in range(x.shape[1])]
    rows = [(n, max(a, 1 - a), float(real[:, j].mean()), float(fake[:, j].mean()))
            for j, (n, a) in enumerate(zip(names, aucs, strict=True))]
    return sorted(rows, key=lambda r: -r[1])[:k]


def w1(a: np.ndarray, b: np.ndarray, points: int = 1001) -> float:
    """Wasserstein-1 distance between the pixel-value distributions of two sets of maps, m/s."""
    p = np.linspace(0, 1, points)
    return float(np.abs(np.quantile(a, p) - np.quantile(b, p)).mean())


def coverage(real: np.ndarray, other: np.ndarray) -> float:
    """Share of ``real`` maps whose nearest map in ``other`` (L1) is closer than their nearest other real map."""
    r = torch.from_numpy(real.reshape(len(real), -1)).double()
    o = torch.from_numpy(other.reshape(len(other), -1)).double()
    rr = torch.cdist(r, r, p=1).fill_diagonal_(float("inf")).min(1).values
    ro = torch.cdist(r, o, p=1).min(1).values
    return float((ro < rr).double().mean())


# ------------------------------------------------------------------------------------------------ real data


def _family_of(path: Path) -> str:
    """The family whose name (without underscores, any case) appears in ``path``'s name or parent folders."""
    text = re.sub(r"[^a-z]", "", str(path).lower())
    found = [fam for fam in FAMILIES if fam.replace("_", "").lower() in text]
    if len(found) != 1:
        raise FwiError(f"cannot tell the family of {path}: pass it as FAMILY=PATH with FAMILY one of "
                       f"{', '.join(FAMILIES)}")
    return found[0]


def find_real(sources: list[str]) -> dict[str, list[Path]]:
    """Velocity files per family from ``--real`` arguments (folders through fwi.data, files, FAMILY=FILE)."""
    found: dict[str, list[Path]] = {}
    for src in sources:
        family, _, path = src.rpartition("=") if "=" in src else ("", "", src)
        p = Path(path)
        if family and family not in FAMILIES:
            raise FwiError(f"unknown family {family!r} in --real {src}; valid: {', '.join(FAMILIES)}")
        if p.is_dir():
            for fam in discover_families(p, check_velocities=False):
                found.setdefault(fam.name, []).extend(pair.velocity for pair in fam.pairs)
        elif p.is_file():
            found.setdefault(family or _family_of(p), []).append(p)
        else:
            raise FwiError(f"--real {src}: no such file or folder")
    return found


def load_real(paths: list[Path], n: int, half: str) -> np.ndarray:
    """Up to ``n`` real maps ``[m, 70, 70]`` m/s, taken evenly from all ``paths`` (after ``half``)."""
    maps = np.concatenate([load_velocity(p) for p in paths])
    if half != "all":
        maps = maps[(0 if half == "even" else 1) :: 2]
    if len(maps) > n:
        maps = maps[np.linspace(0, len(maps) - 1, n).round().astype(int)]
    return maps


# ------------------------------------------------------------------------------------------------------ run


def evaluate(family: str, real: np.ndarray, seed: int, explain: int = 0) -> tuple[dict, np.ndarray]:
    """Every metric of one family (see the module docstring; ``tells``: :func:`tells` of ``explain`` features)
    and the synthetic maps it drew."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    fake = generate(family, len(real), seed).numpy()
    rate = len(real) / (time.perf_counter() - start)
    g = torch.Generator().manual_seed(seed)
    augmented = augment(torch.from_numpy(fake), g).numpy()
    names, fr = map_features(real)
    ff, fa = (map_features(m)[1] for m in (fake, augmented))
    a, b = real[0::2], real[1::2]
    half_fake = fake[: len(b)]
    return {
        "real": len(real),
        "auc": classifier_auc(fr, ff, seed),
        "auc_aug": classifier_auc(fr, fa, seed),
        "auc_ctrl": classifier_auc(fr[0::2], fr[1::2], seed),
        "w1": w1(real, fake),
        "w1_ctrl": w1(a, b),
        "coverage": coverage(a, half_fake),
        "coverage_ctrl": coverage(a, b),
        "rate": rate,
        "tells": tells(names, fr, ff, explain),
    }, fake


def table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of :func:`evaluate` results, one row per family."""
    lines = ["| family | real maps | AUC synthetic vs real | AUC augmented | AUC control (real halves) "
             "| W1 m/s (control) | coverage (control) | maps/s |", "|---|---|---|---|---|---|---|---|"]
    for fam, r in results.items():
        lines.append(f"| {fam} | {r['real']} | {r['auc']:.3f} | {r['auc_aug']:.3f} | {r['auc_ctrl']:.3f} "
                     f"| {r['w1']:.0f} ({r['w1_ctrl']:.0f}) | {r['coverage']:.2f} ({r['coverage_ctrl']:.2f}) "
                     f"| {r['rate']:.0f} |")
    return "\n".join(lines) + "\n"


def tells_table(family: str, rows: list[tuple[str, float, float, float]]) -> str:
    """Markdown table of one family's :func:`tells`."""
    lines = [f"| {family}: feature | AUC alone | real mean | synthetic mean |", "|---|---|---|---|"]
    lines += [f"| {n} | {a:.3f} | {r:.4g} | {f:.4g} |" for n, a, r, f in rows]
    return "\n".join(lines) + "\n"


def speed_table(families: list[str], n: int, seed: int) -> str:
    """Markdown table of generation rates (maps/s, CPU, one thread) of ``n`` maps per family."""
    torch.set_num_threads(1)
    lines = ["| family | maps | seconds | maps/s |", "|---|---|---|---|"]
    for fam in families:
        generate(fam, 8, seed)  # warm-up: first-call allocations
        start = time.perf_counter()
        generate(fam, n, seed)
        seconds = time.perf_counter() - start
        lines.append(f"| {fam} | {n} | {seconds:.2f} | {n / seconds:.0f} |")
    return "\n".join(lines) + "\n"


def plot_grid(pairs: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, per_row: int = 6) -> None:
    """PNG: per family one row of real maps then one of synthetic maps, one colour scale (m/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(pairs), per_row, figsize=(1.6 * per_row, 3.4 * len(pairs)), squeeze=False)
    for i, (fam, (real, fake)) in enumerate(pairs.items()):
        for j, (kind, maps) in enumerate((("real", real), ("synthetic", fake))):
            for k, ax in enumerate(axes[2 * i + j]):
                im = ax.imshow(maps[k * len(maps) // per_row], cmap="jet", vmin=VMIN, vmax=VMAX)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[2 * i + j, 0].set_ylabel(f"{fam}\n{kind}", fontsize=8)
    fig.colorbar(im, ax=axes, fraction=0.02, label="m/s")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=70)
    plt.close(fig)


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="append", metavar="ROOT_OR_FILE",
                        help="data root / family folder / velocity file, or FAMILY=FILE (repeatable)")
    parser.add_argument("--families", help="comma-separated families (default: every family with real maps)")
    parser.add_argument("--n", type=int, default=500, help="real maps per family, at most (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="generator and classifier seed")
    parser.add_argument("--half", choices=("all", "even", "odd"), default="all",
                        help="keep only the even- or odd-indexed real maps (tune on one, check on the other)")
    parser.add_argument("--explain", type=int, default=0, metavar="K",
                        help="also list the K features that alone tell synthetic from real maps best")
    parser.add_argument("--out", type=Path, help="folder for realism.md and realism.png")
    parser.add_argument("--speed", type=int, metavar="N", help="only time the generators: N maps per family")
    args = parser.parse_args(argv)
    if args.speed is not None:
        families = args.families.split(",") if args.families else list(FAMILIES)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown or args.speed < 1:
            raise FwiError(f"--speed needs N >= 1 and families among {', '.join(FAMILIES)}")
        print(f"Generation speed, seed {args.seed}; torch {torch.__version__}, CPU, 1 thread\n")
        print(speed_table(families, args.speed, args.seed))
        return 0
    if args.explain < 0:
        raise FwiError(f"--explain needs K >= 0, got {args.explain}")
    if not args.real:
        raise FwiError("--real is required (a data root, family folder or velocity file), unless --speed")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise FwiError('benchmarks/realism.py needs scikit-learn: pip install -e ".[bench]"') from None
    found = find_real(args.real)
    families = args.families.split(",") if args.families else [f for f in FAMILIES if f in found]
    missing = [f for f in families if f not in found]
    if missing:
        raise FwiError(f"no real maps for {', '.join(missing)}; found: {', '.join(sorted(found)) or 'none'}")
    results, pairs = {}, {}
    for fam in families:
        real = load_real(found[fam], args.n, args.half)
        if len(real) < 2 * FOLDS:
            raise FwiError(f"{fam}: {len(real)} real maps, need at least {2 * FOLDS}")
        results[fam], fake = evaluate(fam, real, args.seed, args.explain)
        pairs[fam] = (real, fake)
        print(f"{fam}: AUC {results[fam]['auc']:.3f}", file=sys.stderr, flush=True)
    text = table(results)
    if args.explain > 0:
        text += "".join("\n" + tells_table(fam, r["tells"]) for fam, r in results.items())
    print(f"Realism, seed {args.seed}, real maps: {args.half}; torch {torch.__version__}, CPU, 1 thread\n")
    print(text)
    if args.out:
        save_text(args.out / "realism.md", text)
        plot_grid(pairs, args.out / "realism.png")
        print(f"wrote {args.out / 'realism.md'} and {args.out / 'realism.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
