"""The training loop end to end on tiny data: outputs, exact resume, per-step schedule, fast failures."""

import math
import os
import socket
import subprocess
import sys

import polars as pl
import pytest
import torch

from fwi import engine
from fwi.checkpoint import load_checkpoint, restore_model
from fwi.config import load_config
from fwi.errors import FwiError
from fwi.train import make_scheduler, train

TINY = ["model.width=2", "train.batch_size=2", "train.workers=0", "train.tensorboard=false"]


def tiny_cfg(tree, tmp_path, *extra):
    return load_config(None, [f"data.root={tree.root}", f"train.out_dir={tmp_path / 'runs'}",
                              f"normalize.cache_dir={tmp_path / 'stats'}", "data.val_fraction=0.5", *TINY, *extra])


def test_run_writes_checkpoint_metrics_and_plots(kaggle_tree, tmp_path):
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=2", "name=a")
    best = train(cfg, progress=False)
    run = tmp_path / "runs" / "a"
    metrics = pl.read_csv(run / "metrics.csv")
    assert metrics["epoch"].to_list() == [0, 1]
    assert best == pytest.approx(metrics["val_mae"].min())
    assert {"val_mae_FlatVel_A", "val_mae_CurveFault_A", "train_l1", "lr"} <= set(metrics.columns)
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    model, normalizer, saved_cfg = restore_model(load_checkpoint(run / "best.pt"))
    assert saved_cfg == cfg and normalizer.mode == "pixel"
    with torch.no_grad():
        v = model(normalizer(torch.randn(1, 5, 1000, 70)))
    assert v.shape == (1, 1, 70, 70) and 1500 <= v.min() and v.max() <= 4500


def test_resume_after_a_crash_mid_epoch_matches_uninterrupted_run(kaggle_tree, tmp_path, monkeypatch):
    extra = ["train.epochs=3", "augment.noise_p=0.5", "augment.dropout_p=0.5"]  # augmentation must replay too
    full = pl.read_csv(_run(tiny_cfg(kaggle_tree, tmp_path, *extra, "name=full"), tmp_path / "runs" / "full"))

    calls = {"n": 0}
    real = engine.train_one_epoch

    def crash_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed mid-epoch
        return real(*args, **kwargs)

    cfg = tiny_cfg(kaggle_tree, tmp_path, *extra, "name=crash")
    monkeypatch.setattr("fwi.train.train_one_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr("fwi.train.train_one_epoch", real)
    assert load_checkpoint(tmp_path / "runs" / "crash" / "last.pt")["epoch"] == 1
    train(cfg, resume=True, progress=False)
    resumed = pl.read_csv(tmp_path / "runs" / "crash" / "metrics.csv")
    assert resumed["epoch"].to_list() == [0, 1, 2]
    for column in ("val_mae", "train_loss", "lr", "step"):
        assert resumed[column].to_list() == full[column].to_list(), column


def _run(cfg, run_dir):
    train(cfg, progress=False)
    return run_dir / "metrics.csv"


def test_existing_run_needs_resume_and_resume_needs_a_run(kaggle_tree, tmp_path):
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=1", "name=b")
    with pytest.raises(FwiError, match="nothing to resume: .*b/last.pt not found"):
        train(cfg, resume=True, progress=False)
    train(cfg, progress=False)
    with pytest.raises(FwiError, match="already holds a run; pass --resume"):
        train(cfg, progress=False)


def test_scheduler_is_stepped_per_optimizer_step():
    cfg = load_config(None, ["train.lr=1.0", "train.warmup_fraction=0.1", "train.schedule=cosine"]).train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear warmup over 10 steps
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.01, abs=1e-3)  # cosine down to 1 %
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_constant_then_cosine_schedule():
    cfg = load_config(None, ["train.lr=1.0", "train.warmup_fraction=0.1", "train.schedule=constant_cosine",
                             "train.constant_fraction=0.5"]).train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # warmup over 10 steps
    assert lrs[10:55] == pytest.approx([1.0] * 45)  # held for half of the 90 steps after warmup
    # then cosine over the last 45 steps: at step 55 + k, 0.01 + 0.99 * (1 + cos(pi * k / 45)) / 2
    assert lrs[55 + 15] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 15 / 45)))
    assert lrs[-1] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 44 / 45)))
    assert all(a > b for a, b in zip(lrs[55:], lrs[56:], strict=False))


def test_train_counts_optimizer_steps_with_accumulation(kaggle_tree, tmp_path):
    # 5 training samples (3 + 2 in the default tree at val_fraction 0.5).
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=1", "train.accumulate=2", "name=acc")
    train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "runs" / "acc" / "last.pt")["step"] == 1  # 2 full batches of 2 -> 1 step
    too_big = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=1", "train.batch_size=4", "train.accumulate=2", "name=big")
    with pytest.raises(FwiError, match="the training split has 5 samples: too few for train.batch_size=4 x "
                                       "train.accumulate=2 x 1 process"):
        train(too_big, progress=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.nope=1"], "error: unknown config key 'train.nope': 'nope' is not in train; valid keys: epochs, "),
        (["data.root=/does/not/exist"], "error: data root not found: /does/not/exist"),
        (["data.root={empty}"], "error: no training files found under {empty} (expected train_samples/<family>/"),
    ],
)
def test_cli_fails_fast_with_one_line(args, message, tmp_path):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty") for a in args]
    out = subprocess.run([sys.executable, "-m", "fwi.train", *args, f"train.out_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(empty=tmp_path / "empty")), out.stderr


def test_ddp_two_cpu_processes_on_gloo(kaggle_tree, tmp_path):
    """torchrun with 2 processes: one run folder, validation gathered over both shards."""
    args = [f"data.root={kaggle_tree.root}", f"train.out_dir={tmp_path / 'runs'}", f"normalize.cache_dir={tmp_path}",
            "data.val_fraction=0.5", "train.epochs=1", "name=ddp", "train.batch_size=1", "model.name=timm_unet",
            "model.encoder=resnet10t", "model.decoder_channels=[8, 8, 8, 8]", *TINY[2:]]
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          "-m", "fwi.train", *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("best val MAE") == 1  # only rank 0 reports
    metrics = pl.read_csv(tmp_path / "runs" / "ddp" / "metrics.csv")
    assert metrics.height == 1 and metrics["step"].to_list() == [3]  # 5 samples padded to 3 per rank, batch 1
    assert set(metrics.columns) >= {"val_mae_FlatVel_A", "val_mae_CurveFault_A"}  # both val shards counted


def test_extra_roots_are_pooled_with_the_main_root(make_tree, tmp_path):
    from fwi.train import Dist, training_manifest

    real = make_tree(test_files=False)
    synthetic = make_tree({"Style_B": [("data/data1.npy", "model/model1.npy", 2),
                                       ("data/data2.npy", "model/model2.npy", 2)]}, test_files=False, seed=1)
    cfg = tiny_cfg(real, tmp_path, f"data.extra_roots=[{synthetic.root}]")
    manifest = training_manifest(cfg, Dist())
    assert manifest.group_by("family").len().sort("family").rows() == [("CurveFault_A", 4), ("FlatVel_A", 6),
                                                                        ("Style_B", 4)]
    only = training_manifest(tiny_cfg(real, tmp_path, f"data.extra_roots=[{synthetic.root}]",
                                      "data.families=[Style_B]"), Dist())
    assert only["family"].unique().to_list() == ["Style_B"]


def test_divergence_stops_with_a_clear_error(kaggle_tree, tmp_path, monkeypatch):
    monkeypatch.setattr("fwi.train.train_one_epoch", lambda *a, **k: {"loss": float("nan")})
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=2", "name=nan")
    with pytest.raises(FwiError, match=r"^training diverged: mean loss nan in epoch 1; lower train.lr"):
        train(cfg, progress=False)


def test_default_data_is_a_generated_and_cached_synthetic_tree(tmp_path, monkeypatch):
    """With data.root null, training simulates the synth section's tree once and reuses it."""
    from fwi.synth import writer

    cfg = load_config(None, ["synth.families=[FlatVel_A]", "synth.samples_per_family=4", "synth.samples_per_file=2",
                             f"synth.cache_dir={tmp_path / 'synth'}", "data.val_fraction=0.5", "train.epochs=1",
                             f"train.out_dir={tmp_path / 'runs'}", f"normalize.cache_dir={tmp_path / 'stats'}",
                             "name=first", *TINY])
    train(cfg, progress=False)
    trees = list((tmp_path / "synth").iterdir())
    assert len(trees) == 1 and len(list(trees[0].rglob("*.npy"))) == 4
    calls = []
    monkeypatch.setattr(writer, "simulate", lambda *a, **k: calls.append(1))
    train(cfg.model_copy(update={"name": "second"}), progress=False)
    assert calls == []  # the cached tree was reused, nothing simulated again
