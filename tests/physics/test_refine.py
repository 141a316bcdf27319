"""fwi.physics.refine: misfit and MAE go down on a toy survey, bounds, best iterate, TV priors, predict --refine.

The toy survey (24 x 24 grid, 10-cell sponge, 160 steps, 3 sources) makes one forward + gradient take ~0.1 s
on one CPU core; the refinement code never assumes the 70 x 70 competition grid.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fwi.physics.acquisition import DEFAULT, VMAX, VMIN
from fwi.physics.acquisition import velocity_to_unit as to_unit
from fwi.physics.refine import TV_EPS, data_misfit, refine, tv_prior
from fwi.physics.simulator import simulate

N = 24
REAL_TEST_FILE = Path(__file__).parents[1] / "data" / "kaggle_test_000039dca2.npy"
TOY = DEFAULT.with_(nz=N, nx=N, nbc=10, nt=160, source_x=(0, 12, 23), receiver_x=tuple(range(N)))


def toy_true() -> torch.Tensor:
    """Two samples ``[2, 24, 24]`` m/s: a dipping two-layer map and a three-layer flat one."""
    z = torch.arange(N, dtype=torch.float32)[:, None].expand(N, N)
    x = torch.arange(N, dtype=torch.float32)[None, :].expand(N, N)
    a = torch.where(z > 8 + 0.3 * x, 2600.0, 1800.0)
    b = torch.where(z < 6, 1700.0, torch.where(z < 14, 2200.0, 2900.0))
    return torch.stack([a, b])


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def test_refine_lowers_misfit_and_mae_on_a_toy_problem():
    true = toy_true()
    observed = simulate(true, TOY)
    v0 = true + torch.tensor([120.0, -120.0])[:, None, None]  # wrong by a constant per sample
    v, hist = refine(v0, observed, steps=12, lr=0.01, tv_weight=0.0, prior="none", acq=TOY)
    assert v.shape == v0.shape and v.dtype == torch.float32
    assert hist["misfit"].shape == (13, 2) and hist["objective"].shape == (13, 2)
    after = data_misfit(v, observed, TOY)
    assert (after < 0.3 * hist["misfit"][0]).all()  # each sample's misfit drops a lot ...
    for b in range(2):  # ... and so does its MAE (120 m/s at the start)
        assert mae(v[b], true[b]) < 0.8 * mae(v0[b], true[b])  # measured ~0.7 (deep cells see little data)


def test_result_stays_in_range_and_is_never_worse_than_the_start():
    true = toy_true()
    observed = simulate(true, TOY)
    v0 = true.clone()
    v0[0, :3] = VMIN  # at the bounds: large steps would leave the range without the projection
    v0[1, -3:] = VMAX
    v, hist = refine(v0, observed, steps=3, lr=0.5, tv_weight=0.1, prior="tv2d", acq=TOY)  # absurd step size
    assert float(v.min()) >= VMIN and float(v.max()) <= VMAX

    def objective(m: torch.Tensor) -> torch.Tensor:
        return data_misfit(m, observed, TOY) + 0.1 * tv_prior(to_unit(m), "tv2d")

    with torch.no_grad():
        start, end = objective(v0), objective(v)
    torch.testing.assert_close(start, hist["objective"][0], rtol=1e-5, atol=0)
    assert (end <= start * (1 + 1e-6)).all()
    assert (hist["objective"].min(0).values <= start).all()


def test_zero_steps_returns_v0_unchanged():
    v0 = toy_true()
    v, hist = refine(v0, simulate(v0, TOY), steps=0, lr=0.01, tv_weight=1.0, prior="tv2d", acq=TOY)
    assert v is v0 and hist["misfit"].numel() == 0


def test_misfit_nt_uses_only_the_first_samples():
    true = toy_true()
    observed = simulate(true, TOY)
    spoiled = observed.clone()
    spoiled[:, :, 60:] = 0  # the data after sample 60 must not matter
    full = data_misfit(true + 50, observed, TOY, misfit_nt=60)
    torch.testing.assert_close(full, data_misfit(true + 50, spoiled, TOY, misfit_nt=60))
    assert float(data_misfit(true, observed, TOY)[0]) < 1e-10  # exact simulator: zero at the truth


def test_tv_of_a_step_edge_matches_hand_computation():
    nz, nx = 4, 6
    u = torch.zeros(1, nz, nx, dtype=torch.float64)
    u[:, :, 3:] = 0.5  # a vertical edge between columns 2 and 3, jump 0.5 (1500 m/s)
    u.requires_grad_(True)
    edge = math.sqrt(0.5**2 + TV_EPS**2) - TV_EPS
    tv1 = tv_prior(u, "tv1d")
    value = float(tv1.detach())
    # nz of the nz * (nx - 1) lateral differences are 0.5; the others are 0 and cost exactly 0
    assert value == pytest.approx(nz * edge / (nz * (nx - 1)), rel=1e-12)
    assert float(tv_prior(u, "tv2d").detach()) == pytest.approx(value, rel=1e-12)  # no vertical variation
    assert float(tv_prior(u, "none")) == 0.0
    (grad,) = torch.autograd.grad(tv1.sum(), u)
    # d/du of sqrt(d^2 + eps^2) with d = u[x=3] - u[x=2]: +-d / sqrt(d^2 + eps^2), divided by the cell count
    g = 0.5 / math.sqrt(0.5**2 + TV_EPS**2) / (nz * (nx - 1))
    expected = torch.zeros(1, nz, nx, dtype=torch.float64)
    expected[:, :, 2], expected[:, :, 3] = -g, g
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)


def test_tv1d_is_zero_for_flat_layers_and_tv2d_is_not():
    u = to_unit(toy_true()[1:])  # flat three-layer map
    assert float(tv_prior(u, "tv1d")) == 0.0
    nz = u.shape[1]  # two interfaces, each nx vertical jumps, over (nz - 1) * nx differences
    jumps = to_unit(torch.tensor([2200.0, 2900.0])) - to_unit(torch.tensor([1700.0, 2200.0]))
    expected = float((torch.sqrt(jumps**2 + TV_EPS**2) - TV_EPS).sum()) / (nz - 1)
    assert float(tv_prior(u, "tv2d")) == pytest.approx(expected, rel=1e-6)


def test_bad_arguments_are_rejected():
    v0 = toy_true()
    obs = simulate(v0, TOY)
    with pytest.raises(ValueError, match="unknown prior"):
        refine(v0, obs, steps=1, prior="tv3d", acq=TOY)
    with pytest.raises(ValueError, match="steps"):
        refine(v0, obs, steps=-1, acq=TOY)


def tiny_checkpoint(path: Path) -> Path:
    """An untrained width-2 InversionNet with a global normalizer (any valid prediction will do)."""
    from fwi.checkpoint import make_checkpoint_state, save_checkpoint
    from fwi.config import load_config
    from fwi.data.normalize import Normalizer
    from fwi.models import build_model
    from fwi.physics.acquisition import SEISMIC_SHAPE

    cfg = load_config(None, {"model.name": "inversionnet", "model.width": 2})
    torch.manual_seed(0)
    normalizer = Normalizer("pixel", np.zeros(SEISMIC_SHAPE), np.ones(SEISMIC_SHAPE))
    save_checkpoint(path, make_checkpoint_state(cfg, build_model(cfg.model).eval(), normalizer))
    return path


def read_map(csv: Path) -> np.ndarray:
    """The one test file's submitted ``[70, 35]`` values, rows in y order."""
    rows = sorted(csv.read_text().splitlines()[1:], key=lambda r: int(r.split(",")[0].rsplit("_", 1)[1]))
    return np.array([[float(x) for x in r.split(",")[1:]] for r in rows])


def test_predict_with_refine_runs_end_to_end(tmp_path):
    from fwi.predict import main

    test_dir = tmp_path / "test"
    test_dir.mkdir()
    shutil.copyfile(REAL_TEST_FILE, test_dir / "000039dca2.npy")
    common = ["--checkpoint", str(tiny_checkpoint(tmp_path / "a.pt")), "--test-dir", str(test_dir), "--device",
              "cpu", "--workers", "0", "predict.float_precision=null"]
    plain, refined = tmp_path / "plain.csv", tmp_path / "refined.csv"
    assert main([*common, "--out", str(plain)]) == 0
    assert main([*common, "--out", str(refined), "--refine", "1", "refine.misfit_nt=50", "refine.lr=0.001",
                 "refine.tv_weight=0"]) == 0
    a, b = read_map(plain), read_map(refined)
    assert a.shape == b.shape == (70, 35)
    assert np.isfinite(b).all() and b.min() >= VMIN and b.max() <= VMAX
    step = 0.001 * (VMAX - VMIN)  # one Adam step moves a cell by at most ~lr on the unit scale
    assert 0 < np.abs(a - b).max() <= 1.01 * step + 0.01
