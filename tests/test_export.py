"""python -m fwi.export: a slim inference checkpoint that predicts exactly what the training checkpoint does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fwi.checkpoint import load_checkpoint, make_checkpoint_state, restore_model, save_checkpoint
from fwi.config import load_config
from fwi.data.normalize import Normalizer
from fwi.export import main
from fwi.inference import Predictor
from fwi.models import build_model
from fwi.physics.acquisition import SEISMIC_SHAPE


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory):
    """A training checkpoint of the quickstart model (6.1 M parameters) with EMA weights and AdamW moments."""
    cfg = load_config(None, ["name=quick"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.01 * torch.randn_like(p))  # the EMA weights differ from the raw ones
    opt = torch.optim.AdamW(model.parameters())
    for p in model.parameters():  # the state one optimizer step leaves: two moments per weight
        opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
    rng = np.random.default_rng(0)
    normalizer = Normalizer("pixel", rng.normal(0, 0.1, SEISMIC_SHAPE), rng.uniform(0.5, 2.0, SEISMIC_SHAPE))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, make_checkpoint_state(cfg, model, normalizer, ema=ema, epoch=7, step=70,
                                                optimizer=opt.state_dict(), family_names=["FlatVel_A"], best=123.4,
                                                history=[{"epoch": e, "val_mae": 200.0 - e} for e in range(8)]))
    return path


def test_slim_checkpoint_predicts_like_the_ema_of_the_original(training_checkpoint, tmp_path, capsys):
    out = tmp_path / "slim.pt"
    assert main([str(training_checkpoint), "--out", str(out)]) == 0
    ratio = out.stat().st_size / training_checkpoint.stat().st_size
    assert ratio < 0.3  # one copy of the weights instead of four (raw, EMA, two AdamW moments)
    assert capsys.readouterr().out.startswith(f"{out}: ")
    slim = torch.load(out, weights_only=True)
    assert set(slim) >= {"config", "model", "normalizer", "normalizer_mode"} and "optimizer" not in slim
    assert slim["exported"] == {"weights": "ema", "epoch": 7, "best": 123.4}
    x = torch.randn(2, *SEISMIC_SHAPE)
    outputs = []
    for state, use_ema in ((load_checkpoint(out), True), (load_checkpoint(training_checkpoint), True),
                           (load_checkpoint(training_checkpoint), False)):
        model, normalizer, cfg = restore_model(state, use_ema=use_ema)
        assert cfg.name == "quick"
        outputs.append(Predictor(model, normalizer)(x))
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])


def test_export_refuses_to_overwrite_and_keeps_raw_weights_on_request(training_checkpoint, tmp_path, capsys):
    out = tmp_path / "slim.pt"
    out.write_text("keep me")
    assert main([str(training_checkpoint), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {out} exists: pass --force to overwrite it"
    assert out.read_text() == "keep me"
    assert main([str(training_checkpoint), "--out", str(out), "--raw", "--force"]) == 0
    assert load_checkpoint(out)["exported"]["weights"] == "raw"
    assert main([str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.pt")]) == 1
    assert capsys.readouterr().err.strip().endswith(f"error: checkpoint not found: {tmp_path / 'nope.pt'}")
