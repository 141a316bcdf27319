"""benchmarks/accuracy.py --smoke end to end: real maps simulated into a tree, a config trained on it, a table of
per-family MAE whose numbers agree with the run's own metrics and an independent mean-map baseline."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fwi.data.manifest import build_manifest

ROOT = Path(__file__).parents[1]
FAMILIES = ["FlatVel_A", "CurveVel_A", "FlatFault_A"]


@pytest.mark.slow
def test_accuracy_benchmark_smoke(tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    out = subprocess.run([sys.executable, "benchmarks/accuracy.py", "--config", "inversionnet", "--smoke",
                          "--cache-dir", str(cache), "--out-dir", str(runs)], cwd=ROOT, capture_output=True,
                         text=True, timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| predictor | val MAE | FlatVel_A | CurveVel_A | FlatFault_A |"
    model_row, baseline_row = ([float(v) for v in line.strip("|").split("|")[1:]] for line in table[2:])
    assert all(math.isfinite(v) and v > 0 for v in model_row + baseline_row)

    # The tree holds the first 4 real maps of each family; 1 of 4 is held out per family.
    root = cache / "real_4"
    real = np.load(ROOT / "tests" / "data" / "velocity_CurveVelA.npz")["velocity"][:4]
    np.testing.assert_array_equal(np.load(root / "CurveVel_A" / "model" / "model1.npy"), real)
    manifest = build_manifest(root, val_fraction=0.25, seed=0, split_by="sample")
    assert manifest.filter(pl.col("split") == "val").group_by("family").len()["len"].to_list() == [1, 1, 1]

    # The model row is the best epoch of the run's metrics; equal counts per family: overall = family mean.
    metrics = pl.read_csv(runs / "bench-acc-inversionnet" / "metrics.csv")
    best = metrics.filter(pl.col("val_mae") == metrics["val_mae"].min()).row(0, named=True)
    assert model_row == pytest.approx([best["val_mae"], *(best[f"val_mae_{f}"] for f in FAMILIES)], abs=0.05)
    assert model_row[0] == pytest.approx(sum(model_row[1:]) / 3, abs=0.1)

    # Baseline: the mean of the 9 training maps against each held-out map, computed here from the files.
    def maps(split):
        rows = manifest.filter(pl.col("split") == split)
        return {f: np.stack([np.load(p)[i] for p, i, g in zip(rows["velocity_path"], rows["index"], rows["family"],
                                                               strict=True) if g == f]) for f in FAMILIES}

    train_mean = np.concatenate(list(maps("train").values())).astype(np.float64).mean(0)
    expected = [float(np.abs(maps("val")[f] - train_mean)[..., 1::2].mean()) for f in FAMILIES]  # scored columns
    assert baseline_row[1:] == pytest.approx(expected, abs=0.05)
