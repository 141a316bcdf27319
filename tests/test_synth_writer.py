"""python -m fwi.synth: exact layout and names, resumable writes, test set + solution, bad input, fidelity."""

import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from conftest import DATA_DIR

from fwi.data.layout import discover_families
from fwi.errors import FwiError
from fwi.submission import COLUMNS
from fwi.synth import writer


@pytest.fixture
def fake_simulate(monkeypatch):
    """Replace the (slow) simulator by a cheap deterministic stand-in; count the maps it simulates."""
    calls = {"maps": 0}

    def fake(velocity, acq=writer.DEFAULT, **kwargs):
        calls["maps"] += len(velocity)
        mean = velocity.mean(dim=(1, 2))[:, None, None, None]
        return mean.expand(len(velocity), acq.n_sources, acq.nt, acq.n_receivers).clone()

    monkeypatch.setattr(writer, "simulate", fake)
    return calls


def test_tree_has_the_competition_layout_and_names(tmp_path, fake_simulate):
    out = writer.write_tree(tmp_path / "t", ["FlatVel_A", "FlatFault_B", "CurveFault_A"], 5, samples_per_file=2,
                            progress=False)
    files = sorted(p.relative_to(out / "train_samples").as_posix() for p in out.rglob("*.npy"))
    assert files == [
        "CurveFault_A/seis2_1_0.npy", "CurveFault_A/seis4_1_0.npy", "CurveFault_A/seis6_1_0.npy",
        "CurveFault_A/vel2_1_0.npy", "CurveFault_A/vel4_1_0.npy", "CurveFault_A/vel6_1_0.npy",
        "FlatFault_B/seis10_1_0.npy", "FlatFault_B/seis6_1_0.npy", "FlatFault_B/seis8_1_0.npy",
        "FlatFault_B/vel10_1_0.npy", "FlatFault_B/vel6_1_0.npy", "FlatFault_B/vel8_1_0.npy",
        "FlatVel_A/data/data1.npy", "FlatVel_A/data/data2.npy", "FlatVel_A/data/data3.npy",
        "FlatVel_A/model/model1.npy", "FlatVel_A/model/model2.npy", "FlatVel_A/model/model3.npy",
    ]
    found = {f.name: f for f in discover_families(out)}  # the data layer accepts it
    assert {name: f.n_samples for name, f in found.items()} == {"FlatVel_A": 5, "FlatFault_B": 5, "CurveFault_A": 5}
    seis = np.load(out / "train_samples/FlatVel_A/data/data3.npy")
    vel = np.load(out / "train_samples/FlatVel_A/model/model3.npy")
    assert seis.shape == (1, 5, 1000, 70) and seis.dtype == np.float32
    assert vel.shape == (1, 1, 70, 70) and vel.dtype == np.float32
    assert fake_simulate["maps"] == 15


def test_rerun_skips_complete_files_and_redoes_broken_ones(tmp_path, fake_simulate):
    args = (tmp_path / "t", ["FlatVel_A"], 4)
    out = writer.write_tree(*args, samples_per_file=2, progress=False)
    before = np.load(out / "train_samples/FlatVel_A/model/model2.npy")
    assert fake_simulate["maps"] == 4
    writer.write_tree(*args, samples_per_file=2, progress=False)
    assert fake_simulate["maps"] == 4  # nothing redone
    broken = out / "train_samples/FlatVel_A/data/data2.npy"
    broken.write_bytes(broken.read_bytes()[:5000])  # a crash left it truncated
    writer.write_tree(*args, samples_per_file=2, progress=False)
    assert fake_simulate["maps"] == 6  # only that file again, with the same maps (seeded per file)
    np.testing.assert_array_equal(np.load(out / "train_samples/FlatVel_A/model/model2.npy"), before)
    with pytest.raises(FwiError, match=r"was generated with other settings \{'seed': \(0, 1\)\}"):
        writer.write_tree(*args, samples_per_file=2, seed=1, progress=False)


def test_test_set_and_solution(tmp_path, fake_simulate):
    out = writer.write_tree(tmp_path / "t", ["FlatVel_A", "Style_A"], 2, samples_per_file=2, test_samples=5,
                            progress=False)
    tests = sorted((out / "test").glob("*.npy"))
    assert len(tests) == 5 and all(re.fullmatch(r"[0-9a-f]{10}", p.stem) for p in tests)
    solution = pl.read_csv(out / "test_solution.csv")
    assert solution.columns == [*COLUMNS, "family"]
    assert solution.height == 5 * 70
    assert solution["family"].value_counts().sort("family")["count"].to_list() == [3 * 70, 2 * 70]
    oid = tests[0].stem
    rows = solution.filter(pl.col("oid_ypos").str.starts_with(oid + "_y_"))
    assert rows["oid_ypos"].to_list() == [f"{oid}_y_{y}" for y in range(70)]
    # The fake simulator encodes the map's mean velocity: the solution must hold that very map.
    mean_from_seismic = float(np.load(tests[0])[0, 0, 0])
    assert rows.select(COLUMNS[1:]).to_numpy().min() >= 1500
    assert abs(rows.select(COLUMNS[1:]).to_numpy().mean() - mean_from_seismic) < 100


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 70, 70), 1000.0, np.float32), "velocity must lie in [1500, 4500] m/s, found min 1000 max 1000"),
        (np.full((2, 1, 70, 70), np.nan, np.float32), "velocity contains NaN or Inf"),
        (np.full((2, 60, 70), 2000.0, np.float32), "velocity must have shape (N, 1, 70, 70) or (N, 70, 70), got "
                                                  "(2, 60, 70)"),
    ],
)
def test_bad_velocity_input_is_a_one_line_error(tmp_path, array, message):
    path = tmp_path / "v.npy"
    np.save(path, array)
    out = subprocess.run([sys.executable, "-m", "fwi.synth", "--velocity", str(path), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"error: {path}: {message}"]


def test_velocity_mode_reproduces_the_real_seismic(tmp_path):
    """The issue's acceptance check: simulate the real map from the CLI, compare with the real data."""
    out = subprocess.run([sys.executable, "-m", "fwi.synth", "--velocity", str(DATA_DIR / "curvefault_sample0_vel.npy"),
                          "--out", str(tmp_path / "cf"), "--quiet"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    simulated = np.load(tmp_path / "cf/data/data1.npy")
    real = np.load(DATA_DIR / "curvefault_sample0_seis.npy")
    rel = np.linalg.norm(simulated[..., :999, :] - real[..., :999, :]) / np.linalg.norm(real[..., :999, :])
    assert rel <= 1e-5
    assert np.all(simulated[..., 999, :] == 0)
    np.testing.assert_array_equal(np.load(tmp_path / "cf/model/model1.npy"),
                                  np.load(DATA_DIR / "curvefault_sample0_vel.npy"))
    check = subprocess.run([sys.executable, "-m", "fwi.data", "--root", str(tmp_path / "cf")], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr


def test_stream_batches_are_seeded_and_valid():
    from fwi.physics.acquisition import DEFAULT
    from fwi.synth.augment import VelocityAugment
    from fwi.synth.stream import SyntheticStream

    stream = SyntheticStream(["FlatVel_A", "Style_B"], 3, 2, seed=1, velocity_augment=VelocityAugment(),
                             acquisition=DEFAULT.with_(nt=30))
    batches = list(stream)
    assert len(batches) == 2
    seismic, velocity, family = batches[0]
    assert seismic.shape == (3, 5, 30, 70) and velocity.shape == (3, 1, 70, 70) and family.shape == (3,)
    assert 1500 <= velocity.min() and velocity.max() <= 4500 and torch.isfinite(seismic).all()
    assert torch.equal(stream.batch(0)[0], seismic)  # replayable
    stream.set_epoch(1)
    assert not torch.equal(stream.batch(0)[1], velocity)  # a new epoch draws new maps


def test_damaged_synth_json_is_a_one_line_error(tmp_path, fake_simulate):
    out = writer.write_tree(tmp_path / "t", ["FlatVel_A"], 2, samples_per_file=2, progress=False)
    (out / "synth.json").write_text('{"families": ["FlatVel_A"], "samp')  # cut short
    with pytest.raises(FwiError, match=rf"^{re.escape(str(out / 'synth.json'))} is damaged \(JSONDecodeError: .*\); "
                                       r"delete it \(or the whole .*\) to regenerate the tree$"):
        writer.write_tree(out, ["FlatVel_A"], 2, samples_per_file=2, progress=False)
