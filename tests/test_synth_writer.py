"""python -m fwi.synth: exact layout and names, resumable writes, test set + solution, bad input, fidelity."""

import json
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
    calls = {"maps": 0, "batches": []}

    def fake(velocity, acq=writer.DEFAULT, **kwargs):
        calls["maps"] += len(velocity)
        calls["batches"].append(len(velocity))
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


def tree_files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shards_split_a_job_into_disjoint_parts_of_the_same_bytes(tmp_path, fake_simulate):
    args = (["FlatVel_A", "CurveFault_B"], 7)
    kwargs = {"samples_per_file": 2, "test_samples": 5, "progress": False}
    whole = tree_files(writer.write_tree(tmp_path / "whole", *args, **kwargs))
    shards = [tree_files(writer.write_tree(tmp_path / f"shard{i}", *args, **kwargs, job=writer.Job(shard=(i, 2))))
              for i in range(2)]
    shared = {"synth.json", "test_solution.csv"}  # every shard writes the tree's description
    assert set(shards[0]) & set(shards[1]) == shared
    assert set(shards[0]) | set(shards[1]) == set(whole)
    # 8 training files (seismic + velocity .npy each) and 5 test files, alternately: 4 + 3 and 4 + 2.
    assert len(shards[0]) - len(shared) == 2 * 4 + 3 and len(shards[1]) - len(shared) == 2 * 4 + 2
    for part in shards:
        assert all(part[name] == whole[name] for name in part)
    # A shard's rerun resumes its own files only; the other shard's files are not its business.
    before = fake_simulate["maps"]
    writer.write_tree(tmp_path / "shard0", *args, **kwargs, job=writer.Job(shard=(0, 2)))
    assert fake_simulate["maps"] == before


def test_float16_seismic_batches_and_recorded_settings(tmp_path, fake_simulate):
    job = writer.Job(batch=2, seismic_dtype="float16")
    out = writer.write_tree(tmp_path / "t", ["FlatVel_A"], 5, samples_per_file=5, progress=False, job=job)
    assert fake_simulate["batches"] == [2, 2, 1]
    seis = np.load(out / "train_samples/FlatVel_A/data/data1.npy")
    vel = np.load(out / "train_samples/FlatVel_A/model/model1.npy")
    assert seis.dtype == np.float16 and vel.dtype == np.float32
    np.testing.assert_array_equal(seis[:, 0, 0, 0], vel.mean(axis=(1, 2, 3)).astype(np.float16))  # the fake's value
    assert json.loads((out / "synth.json").read_text())["seismic_dtype"] == "float16"
    assert [f.name for f in discover_families(out)] == ["FlatVel_A"]
    with pytest.raises(FwiError, match=r"other settings \{'seismic_dtype': \('float16', None\)\}"):
        writer.write_tree(tmp_path / "t", ["FlatVel_A"], 5, samples_per_file=5, progress=False)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"shard": (2, 2)}, "shard must be i/n with 0 <= i < n, got 2/2"),
        ({"batch": 0}, "batch must be >= 1, got 0"),
        ({"seismic_dtype": "int8"}, "unknown seismic dtype 'int8'; use one of float32, float16"),
        ({"wavefield_dtype": "fp8"}, "unknown wavefield dtype 'fp8'; use one of float32, float16, bfloat16"),
    ],
)
def test_bad_job_settings(job, message):
    with pytest.raises(FwiError, match=f"^{re.escape(message)}$"):
        writer.Job(**job)


def test_reduced_precision_wavefield_needs_the_triton_backend(tmp_path):
    with pytest.raises(FwiError, match=r"^a float16 wavefield needs the Triton backend: a CUDA device and the triton "):
        writer.write_tree(tmp_path / "t", ["FlatVel_A"], 1, device="cpu", job=writer.Job(wavefield_dtype="float16"))


@pytest.mark.parametrize(("shard", "message"), [("1", "--shard must look like I/N (e.g. 0/4), got '1'"),
                                                ("3/2", "shard must be i/n with 0 <= i < n, got 3/2")])
def test_bad_shard_flag_is_a_one_line_error(tmp_path, capsys, shard, message):
    from fwi.synth.__main__ import main

    assert main(["--out", str(tmp_path / "o"), "--shard", shard]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 70, 70), 1000.0, np.float32), "velocity must lie in [1500, 4500] m/s, found min 1000 max 1000"),
        (np.full((2, 1, 70, 70), np.nan, np.float32), "velocity contains NaN or Inf"),
        (np.full((2, 60, 70), 2000.0, np.float32), "velocity must have shape (N, 1, 70, 70), (N, 70, 70) or (70, 70), "
                                                  "got (2, 60, 70)"),
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
