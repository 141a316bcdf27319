"""Losses: the L1 term's scale, and the physics term's value and gradient through the simulator."""

import numpy as np
import pytest
import torch
from conftest import DATA_DIR

from fwi.config import load_config
from fwi.losses import VelocityLoss, seismic_misfit
from fwi.models import build_model
from fwi.physics.acquisition import DEFAULT
from fwi.physics.simulator import simulate


def test_l1_is_on_the_unit_scale():
    true = torch.full((1, 1, 70, 70), 3000.0)
    loss, parts = VelocityLoss()(true + 300.0, true)
    assert float(loss) == pytest.approx(300.0 / 3000.0)  # 300 m/s over a 3000 m/s range
    assert set(parts) == {"l1"}


def test_physics_term_is_zero_for_the_true_velocity_and_positive_otherwise():
    nt = 60
    v = torch.from_numpy(np.load(DATA_DIR / "curvefault_sample0_vel.npy"))  # [1, 1, 70, 70]
    observed = torch.from_numpy(np.load(DATA_DIR / "curvefault_sample0_seis.npy"))  # [1, 5, 1000, 70]
    loss = VelocityLoss(physics_weight=1.0, physics_fraction=1.0, physics_nt=nt)
    assert float(loss.physics(v, observed)) < 1e-5  # the exact simulator reproduces the real data
    assert float(loss.physics(v * 1.05, observed)) > 1e-2
    exact = simulate(v[:, 0], DEFAULT.with_(nt=nt, zero_last_sample=False))
    assert float(seismic_misfit(exact, observed[:, :, :nt])) < 1e-5


def test_physics_gradient_reaches_the_model():
    cfg = load_config(None, ["model.width=2", "loss.physics_weight=1", "loss.physics_nt=40",
                             "loss.physics_fraction=0.5"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    seismic = torch.from_numpy(np.load(DATA_DIR / "curvefault_sample0_seis.npy")).repeat(2, 1, 1, 1)
    pred = model(seismic / seismic.std())
    loss_fn = VelocityLoss.from_config(cfg.loss)
    physics = loss_fn.physics(pred, seismic)  # physics term alone
    physics.backward()
    grad = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
    assert grad > 0
    total, parts = loss_fn(pred.detach(), pred.detach(), seismic, step=0)
    assert set(parts) == {"l1", "physics"} and float(total) == pytest.approx(float(parts["physics"]))
    assert set(VelocityLoss.from_config(cfg.loss.model_copy(update={"physics_every": 2}))(
        pred.detach(), pred.detach(), seismic, step=1)[1]) == {"l1"}  # not due on odd steps
