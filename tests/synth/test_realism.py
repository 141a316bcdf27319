"""benchmarks/realism.py: its metrics on known cases and a full run on a small Kaggle-layout tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fwi.physics.acquisition import SEISMIC_SHAPE

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def realism(load_benchmark):
    return load_benchmark("realism")


def real_maps(name: str, n: int) -> np.ndarray:
    return np.load(DATA / f"velocity_{name}.npz")["velocity"][:n, 0]


def test_classifier_auc_separates_only_different_maps(realism):
    flat, fault = real_maps("FlatVelA", 80), real_maps("FlatFaultA", 80)
    _, f_flat = realism.map_features(flat)
    _, f_fault = realism.map_features(fault)
    assert realism.classifier_auc(f_flat[:40], f_fault[:40]) > 0.95  # two families: told apart
    assert realism.classifier_auc(f_flat[:40], f_flat[40:]) < 0.8  # two halves of one family: not


def test_tells_rank_the_feature_that_differs_first(realism):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    fake[:, 2] += 5.0  # only this feature tells the sets apart
    rows = realism.tells(["a", "b", "c", "d"], real, fake, 2)
    assert len(rows) == 2 and rows[0][0] == "c" and rows[0][1] > 0.99 > rows[1][1]
    assert rows[0][2] == pytest.approx(real[:, 2].mean()) and rows[0][3] == pytest.approx(fake[:, 2].mean())
    real[:, 2], fake[:, 2] = -real[:, 2], -fake[:, 2]  # lower instead of higher: the same AUC (symmetric)
    assert realism.tells(["a", "b", "c", "d"], real, fake, 1)[0][:2] == ("c", pytest.approx(rows[0][1]))


def test_coverage_and_w1(realism):
    a, b = real_maps("CurveVelA", 40), real_maps("CurveVelA", 80)[40:]
    assert realism.coverage(a, a.copy()) == 1.0  # every map has an exact twin
    assert realism.coverage(a, np.full_like(a, 1500.0)) == 0.0  # one constant map is nowhere near
    assert realism.w1(a, a + 10.0) == pytest.approx(10.0, abs=1e-3)
    assert 0.0 < realism.coverage(a, b) < 1.0


def test_family_inferred_from_file_name(realism, tmp_path):
    found = realism.find_real([str(DATA / "velocity_FlatVelA.npz"), f"CurveVel_A={DATA / 'velocity_FlatVelA.npz'}"])
    assert found == {"FlatVel_A": [DATA / "velocity_FlatVelA.npz"], "CurveVel_A": [DATA / "velocity_FlatVelA.npz"]}
    np.save(tmp_path / "maps.npy", real_maps("FlatVelA", 4))
    with pytest.raises(realism.FwiError, match="cannot tell the family of .*maps.npy: pass it as FAMILY=PATH"):
        realism.find_real([str(tmp_path / "maps.npy")])
    with pytest.raises(realism.FwiError, match="unknown family 'Flat'"):
        realism.find_real([f"Flat={tmp_path / 'maps.npy'}"])


def kaggle_tree(root: Path, n: int) -> Path:
    """``root/train_samples`` with FlatVel_A (data/model naming) and FlatFault_A (seis/vel naming) of real maps."""
    files = {"FlatVel_A": ("data/data1.npy", "model/model1.npy", "FlatVelA"),
             "FlatFault_A": ("seis2_1_0.npy", "vel2_1_0.npy", "FlatFaultA")}
    for family, (seis, vel, name) in files.items():
        folder = root / "train_samples" / family
        (folder / vel).parent.mkdir(parents=True, exist_ok=True)
        (folder / seis).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / vel, real_maps(name, n)[:, None])
        np.lib.format.open_memmap(folder / seis, "w+", np.float16, (n, *SEISMIC_SHAPE))  # sparse, never read
    return root


def test_runs_on_a_kaggle_tree(realism, tmp_path, capsys):
    root = kaggle_tree(tmp_path / "kaggle", 30)
    out = tmp_path / "out"
    assert realism.main(["--real", str(root), "--n", "30", "--explain", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| Flat") and ":" not in line]
    assert [r.split(" | ")[0:2] for r in rows] == [["| FlatVel_A", "30"], ["| FlatFault_A", "30"]]
    for family in ("FlatVel_A", "FlatFault_A"):  # --explain 2: two features per family, AUC in [0.5, 1]
        block = text.split(f"| {family}: feature | AUC alone | real mean | synthetic mean |")[1].splitlines()[2:4]
        assert all(0.5 <= float(line.split("|")[2]) <= 1.0 for line in block), block
    for r in rows:
        cells = r.strip("|").split("|")
        assert 0.5 <= float(cells[2]) <= 1.0 and 0.5 <= float(cells[4]) <= 1.0  # AUCs
    assert (out / "realism.md").read_text() in text
    assert (out / "realism.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_one_line(realism, tmp_path, capsys):
    root = kaggle_tree(tmp_path / "kaggle", 12)
    assert realism.main(["--real", str(root), "--families", "Style_A"]) == 1
    assert capsys.readouterr().err == "error: no real maps for Style_A; found: FlatFault_A, FlatVel_A\n"
    assert realism.main(["--real", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err == f"error: --real {tmp_path / 'nothing'}: no such file or folder\n"
    assert realism.main(["--real", str(root), "--half", "even"]) == 1
    assert capsys.readouterr().err == "error: FlatVel_A: 6 real maps, need at least 10\n"
    assert realism.main([]) == 1
    assert capsys.readouterr().err.startswith("error: --real is required (a data root")
    assert realism.main(["--real", str(root), "--explain", "-1"]) == 1
    assert capsys.readouterr().err == "error: --explain needs K >= 0, got -1\n"


def test_speed_table(realism, capsys):
    assert realism.main(["--speed", "16", "--families", "CurveVel_A,FlatFault_A"]) == 0
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r[0].strip() for r in rows[1:]] == ["CurveVel_A", "FlatFault_A"]
    for r in rows[1:]:
        assert int(r[1]) == 16 and float(r[3]) > 0
    assert realism.main(["--speed", "0"]) == 1
    assert capsys.readouterr().err.startswith("error: --speed needs N >= 1")
