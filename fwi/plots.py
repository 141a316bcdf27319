"""Figures written into run folders (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fwi.io import atomic_path  # noqa: E402
from fwi.physics.acquisition import VMAX, VMIN  # noqa: E402


def plot_predictions(pred: np.ndarray, true: np.ndarray, path: str | Path, title: str = "") -> None:
    """One row per sample: true velocity, predicted velocity, |error| (all m/s). Inputs ``[N, 1, 70, 70]``."""
    pred, true = np.asarray(pred)[:, 0], np.asarray(true)[:, 0]
    n = len(pred)
    fig, axes = plt.subplots(n, 3, figsize=(9, 2.8 * n), squeeze=False)
    for i in range(n):
        err = np.abs(pred[i] - true[i])
        panels = [(true[i], "true", "viridis", VMIN, VMAX), (pred[i], "predicted", "viridis", VMIN, VMAX),
                  (err, f"|error|, MAE {err.mean():.1f}", "magma", 0, max(float(err.max()), 1.0))]
        for ax, (img, name, cmap, lo, hi) in zip(axes[i], panels, strict=True):
            im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, label="m/s")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
