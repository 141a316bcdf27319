"""``python -m fwi.data``: summary output and exit codes, run as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fwi.data", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_summary_of_a_valid_tree(kaggle_tree):
    r = run_cli("--root", kaggle_tree.root)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"data root: {kaggle_tree.root}" in out
    assert "|max| from the first 4 samples of each file (--check-values: all)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    # family, files, samples, train, val, dtype, vel min, vel max, seis |max|
    # 2 files per family (Kaggle's layout) are too few for a file split at val_fraction 0.1: split by sample
    assert rows["FlatVel_A"][:6] == ["FlatVel_A", "2", "6", "5", "1", "float32/float32"]
    assert rows["CurveFault_A"][:5] == ["CurveFault_A", "2", "4", "3", "1"]
    assert r.stderr.splitlines() == ["note: CurveFault_A, FlatVel_A: too few files to hold out val_fraction=0.1 "
                                     "by file; their samples are split instead"]
    assert rows["total"][1:3] == ["4", "10"]
    vel = np.concatenate([a for p, a in kaggle_tree.arrays.items() if p.name.startswith(("model", "vel"))
                          and "FlatVel_A" in str(p)])
    assert float(rows["FlatVel_A"][6]) == round(float(vel.min()), 1)
    assert "test: 2 files in" in out


def test_check_values_and_overrides(kaggle_tree):
    r = run_cli("--root", kaggle_tree.root, "--check-values", "data.families=[FlatVel_A]",
                "data.val_fraction=0")
    assert r.returncode == 0, r.stderr
    assert "seismic: every value checked (finite), |max| from every sample" in r.stdout
    assert "FlatVel_A" in r.stdout and "CurveFault_A" not in r.stdout
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("FlatVel_A"))
    seis = np.concatenate([a for p, a in kaggle_tree.arrays.items() if p.name.startswith("data")])
    assert row[3:5] == ["6", "0"]
    assert float(row[8]) == float(f"{np.abs(seis).max():.4g}")


def test_invalid_data_prints_one_error_line(make_tree):
    tree = make_tree(test_files=False)
    bad = tree.family("CurveFault_A") / "seis4_1_0.npy"
    with open(bad, "r+b") as f:
        f.truncate(5000)
    r = run_cli("--root", tree.root)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], r.stderr


def test_nan_seismic_beyond_the_sampled_part_needs_check_values(make_tree):
    tree = make_tree({"Solo": [("seis1.npy", "vel1.npy", 5)]}, test_files=False)
    seis = tree.family("Solo") / "seis1.npy"
    arr = tree.arrays[seis].copy()
    arr[4, 0, 0, 0] = np.nan  # sample 4: not among the first 4 the default summary reads
    np.save(seis, arr)
    r = run_cli("--root", tree.root)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("note: Solo: too few files")  # one file: its samples are split
    r = run_cli("--root", tree.root, "--check-values")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == f"error: {seis}: NaN or Inf in sample 4"


def test_empty_root_and_missing_root(tmp_path):
    r = run_cli("--root", tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"error: no training files found under {tmp_path} (expected train_samples/<family>/ holding "
        "data/dataN.npy + model/modelN.npy or seisK.npy + velK.npy)")
    r = run_cli()
    assert r.returncode == 1 and r.stderr.startswith("error: no data root")
