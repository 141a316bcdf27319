"""The training loop end to end on tiny data: outputs, exact resume, per-step schedule, fast and loud failures
that lose nothing, the run-folder lock, mixed precision (fp16 + GradScaler on the CPU)."""

import errno
import math
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from fwi import engine
from fwi.checkpoint import load_checkpoint
from fwi.config import load_config
from fwi.data.normalize import Normalizer
from fwi.errors import FwiError
from fwi.inference import Predictor
from fwi.losses import VelocityLoss
from fwi.models import build_model
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
    predictor, saved_cfg = Predictor.from_checkpoint(run / "best.pt")
    assert saved_cfg == cfg and predictor.normalizer.mode == "pixel"
    v = predictor(torch.randn(1, 5, 1000, 70))
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


def test_checkpoint_stores_the_ema_once_and_an_export_cannot_be_resumed(kaggle_tree, tmp_path):
    from fwi.export import export

    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=1", "name=once")
    train(cfg, progress=False)
    run = tmp_path / "runs" / "once"
    state = load_checkpoint(run / "last.pt")
    assert "ema_state" not in state and state["ema_updates"] == state["step"] == 2  # one EMA update per step
    n_weights = len(state["model"])
    n_tensors = sum(isinstance(v, torch.Tensor) for part in ("model", "ema") for v in state[part].values())
    assert len(state["ema"]) == n_weights and n_tensors == 2 * n_weights  # the raw and the EMA weights, once each
    export(run / "last.pt", tmp_path / "slim.pt")
    (run / "last.pt").write_bytes((tmp_path / "slim.pt").read_bytes())
    with pytest.raises(FwiError, match=rf"^{run / 'last.pt'} lacks the training state a resume needs \(no epoch, step, "
                                       r"optimizer, scheduler, history, best, ema_updates\): it is an export"):
        train(cfg, resume=True, progress=False)


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_validation_scores_what_predict_submits(kaggle_tree, tmp_path, tta):
    """metrics.csv's val_mae is the MAE of the best checkpoint's Predictor (EMA weights, the same TTA, clipped) on
    the validation split: the predictions fwi.predict would submit for those samples."""
    from fwi.data.dataset import SeismicDataset
    from fwi.metrics import competition_mae
    from fwi.train import training_manifest

    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=1", "name=val", f"train.val_tta={tta}")
    best = train(cfg, progress=False)
    val = SeismicDataset(training_manifest(cfg), "val")
    seismic, velocity = (torch.stack([val[i][k] for i in range(len(val))]) for k in (0, 1))
    scores = {t: competition_mae(Predictor.from_checkpoint(tmp_path / "runs/val/best.pt", tta=t)[0](seismic),
                                 velocity) for t in ("none", "flip")}
    assert best == pytest.approx(scores[tta], abs=1e-5)  # float32 round-off of other batch sizes only
    # The barely trained net hardly sees its input, yet the two TTAs' scores differ by far more than the round-off:
    # the one validation applied is the one asked for.
    assert abs(scores["none"] - scores["flip"]) > 1e-3


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
            "data.val_fraction=0.5", "train.epochs=1", "name=ddp", "train.batch_size=2", "model.name=timm_unet",
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
    assert metrics.height == 1 and metrics["step"].to_list() == [1]  # 5 samples padded to 3 per rank: 1 batch of 2
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


# --- loud failures, nothing lost -------------------------------------------------------------------------------


def test_changed_config_resume_is_refused_before_writing_anything(kaggle_tree, tmp_path, capsys):
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=1", "name=r")
    train(cfg, progress=False)
    run = tmp_path / "runs" / "r"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    changed = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=2", "name=r", "model.width=4", "train.schedule=onecycle")
    with pytest.raises(FwiError) as info:
        train(changed, resume=True, progress=False)
    assert str(info.value) == (
        f"cannot resume {run}: model.width (2 -> 4), train.epochs (1 -> 2), train.schedule ('cosine' -> 'onecycle') "
        "differ from its last.pt; a resumed run may change only how long, where and how fast it runs and what it logs "
        "(train.epochs, workers, device, max_minutes, logging); start another run with name=<new>")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # config.yaml untouched
    capsys.readouterr()
    longer = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=2", "name=r", "train.max_minutes=60", "train.plot=false")
    train(longer, resume=True, progress=False)  # harmless keys: more epochs, a budget, no plots
    assert f"resumed from epoch 1 of {run / 'last.pt'}" in capsys.readouterr().out
    assert pl.read_csv(run / "metrics.csv")["epoch"].to_list() == [0, 1]


def test_a_second_run_of_a_busy_name_is_refused_and_a_dead_runs_lock_taken_over(kaggle_tree, tmp_path, capsys):
    from fwi.train import main

    run = tmp_path / "runs" / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom fwi.io import exclusive\n"
         f"with exclusive({str(run / '.lock')!r}, 'x'):\n    print('ready', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        args = [f"data.root={kaggle_tree.root}", f"train.out_dir={tmp_path / 'runs'}", "name=busy", "train.epochs=1",
                f"normalize.cache_dir={tmp_path / 'stats'}", "data.val_fraction=0.5", *TINY]
        assert main(args) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"error: run folder {run} is in use by process {holder.pid}@{socket.gethostname()} (lock file "
            f"{run / '.lock'}); wait for it to finish, or use another name"]
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # the busy folder was not touched
    finally:
        holder.kill()  # killed: its lock file stays, holding its pid
        holder.wait()
    assert (run / ".lock").read_text().startswith(f"{holder.pid}@")
    assert main([*args, "--quiet"]) == 0  # the dead run's lock is taken over
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith("best val MAE ") and out.err == ""  # --quiet: the summary only


def test_nan_in_a_training_file_stops_with_one_line_naming_it(make_tree, tmp_path):
    tree = make_tree(test_files=False)
    bad = tree.family("FlatVel_A") / "data" / "data2.npy"
    seismic = np.load(bad)
    seismic[1, 0, 10, 3] = np.nan
    np.save(bad, seismic)
    out = subprocess.run([sys.executable, "-m", "fwi.train", f"data.root={tree.root}", f"train.out_dir={tmp_path}",
                          f"normalize.cache_dir={tmp_path / 'stats'}", "data.val_fraction=0.5", "--quiet", *TINY],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"error: {bad}: sample 1 of the training seismic contains NaN or Inf (1 bad "
                                       "samples in this chunk of 3); fix or remove the file"]
    assert not (tmp_path / "stats").exists() and not (tmp_path / "quickstart" / "last.pt").exists()


def test_a_non_finite_validation_score_fails_the_run(kaggle_tree, tmp_path, monkeypatch):
    from fwi.metrics import ALL, MAEAccumulator

    monkeypatch.setattr(MAEAccumulator, "compute", lambda self: {ALL: math.nan})
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=2", "name=nanval")
    with pytest.raises(FwiError, match=r"^validation MAE is nan after epoch 1: the model predicts non-finite "
                                       r"velocities \(check the validation data"):
        train(cfg, progress=False)
    assert not (tmp_path / "runs" / "nanval" / "last.pt").exists()


def test_full_disk_mid_run_is_one_line_and_the_checkpoint_precedes_the_metrics(kaggle_tree, tmp_path, monkeypatch):
    from fwi import io

    real, seen = os.fsync, []

    def fsync(fd):  # the second epoch's last.pt meets a full disk
        name = os.readlink(f"/proc/self/fd/{fd}")
        seen.append(name)
        if ".last.pt." in name and sum(".last.pt." in n for n in seen) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=3", "name=full")
    run = tmp_path / "runs" / "full"
    with pytest.raises(FwiError) as info:
        train(cfg, progress=False)
    assert str(info.value) == (f"no space left on the device of {run / 'last.pt'} while writing it (nothing was "
                               "written; free some space and rerun)")
    assert load_checkpoint(run / "last.pt")["epoch"] == 0  # the previous epoch's, whole
    assert pl.read_csv(run / "metrics.csv")["epoch"].to_list() == [0]  # never ahead of last.pt
    assert not list(run.glob(".*.tmp"))


def test_fp16_with_grad_scaler_trains_on_cpu_and_outputs_follow_the_umask(kaggle_tree, tmp_path, monkeypatch):
    calls = {}

    class FakeWandb:  # records what the run would send to Weights & Biases
        @staticmethod
        def init(**kwargs):
            calls["init"] = kwargs
            return SimpleNamespace(log=lambda row: calls.setdefault("rows", []).append(row), finish=lambda: None)

    monkeypatch.setitem(sys.modules, "wandb", FakeWandb)
    old = os.umask(0o027)
    try:
        cfg = tiny_cfg(kaggle_tree, tmp_path, "train.epochs=2", "name=half", "train.amp_dtype=fp16",
                       "train.wandb=true", "train.wandb_mode=online", "train.wandb_project=gwi",
                       "train.wandb_entity=team", "tune.storage=postgresql+psycopg2://me:hunter2@db/optuna")
        train(cfg, progress=False)
    finally:
        os.umask(old)
    run = tmp_path / "runs" / "half"
    state = load_checkpoint(run / "last.pt")
    scaler = state["scaler"]  # saved only when the scaler is enabled (fp16)
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == state["step"] == 4  # 4 good steps
    assert math.isfinite(pl.read_csv(run / "metrics.csv")["val_mae"][-1])
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "plots/epoch_000.png"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name
    init = calls["init"]
    assert (init["mode"], init["project"], init["entity"], init["name"]) == ("online", "gwi", "team", "half")
    assert init["config"]["tune"]["storage"] == "postgresql+psycopg2://me:***@db/optuna"
    assert [r["epoch"] for r in calls["rows"]] == [0, 1]
    assert not [p for p in run.rglob("*") if p.is_file() and b"hunter2" in p.read_bytes()]
    train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 3})}), resume=True, progress=False)
    assert load_checkpoint(run / "last.pt")["scaler"]["_growth_tracker"] == 6  # the scaler's state went on


def test_grad_scaler_skips_an_overflowing_fp16_step(tmp_path):
    """The engine's fp16 path on CPU: scaled backward, unscale before clipping, skipped step on inf, backoff."""
    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.width=2"]).model)
    batch = (torch.randn(2, 5, 1000, 70), torch.full((2, 1, 70, 70), 3000.0), torch.zeros(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    learner = Predictor(model, Normalizer("global", np.zeros(()), np.ones(())), amp_dtype=torch.float16)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # scaled fp16 gradients overflow
    state = engine.TrainState(model, opt, sched, scaler)
    with pytest.warns(UserWarning, match="lr_scheduler.step"):  # torch notes the skipped first step
        engine.train_one_epoch(learner, [batch], VelocityLoss(), state, grad_clip=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # step skipped
    assert scaler.get_scale() == 2.0**99 and state.step == 1
    state.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    engine.train_one_epoch(learner, [batch], VelocityLoss(), state, grad_clip=1.0)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # stepped
    assert state.scaler.get_scale() == 256.0


@pytest.mark.parametrize(("choice", "note"), [("fp16", "fp16 autocast + GradScaler on cpu"), ("auto", "off on cpu"),
                                              ("bf16", "bf16 autocast on cpu")])
def test_print_config_shows_the_amp_choice(choice, note, capsys):
    from fwi.train import main

    with pytest.raises(SystemExit):
        main(["--print-config", f"train.amp_dtype={choice}", "train.device=cpu"])
    assert capsys.readouterr().out.splitlines()[-1] == f"# train.amp_dtype={choice} here: {note}"
