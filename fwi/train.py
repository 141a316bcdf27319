"""``python -m fwi.train``: train a seismic-to-velocity network.

``train(cfg) -> best validation MAE (m/s)`` is the whole job and can be called repeatedly in one process
(fwi.tune does). Under ``torchrun`` it trains with DistributedDataParallel, one process per device.
Outputs go to ``<train.out_dir>/<name>/``: ``config.yaml``, ``last.pt`` and ``best.pt`` (atomic, every
epoch, written before ``metrics.csv`` so the metrics never run ahead of the checkpoint), ``metrics.csv``,
``plots/epoch_NNN.png`` and TensorBoard logs in ``tb/``. A run holds ``.lock`` in its folder while it runs: a
second run of the same name is refused instead of interleaving its outputs.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from fwi.checkpoint import checkpoint_config, load_checkpoint, restore_training, save_checkpoint, training_checkpoint
from fwi.cli import config_parser, main_guard, resolve_config
from fwi.config import Config, config_to_dict, flatten_config, save_config
from fwi.data.augment import AugmentedDataset, build_augment
from fwi.data.dataset import SeismicDataset
from fwi.data.manifest import build_manifest
from fwi.data.normalize import Normalizer, cached_stats
from fwi.device import resolve_device
from fwi.engine import TrainState, amp_note, describe_amp, evaluate, make_scaler, resolve_amp, train_one_epoch
from fwi.errors import FwiError
from fwi.inference import Predictor
from fwi.io import atomic_path, exclusive
from fwi.losses import VelocityLoss
from fwi.metrics import ALL, MAEAccumulator
from fwi.models import build_model
from fwi.models.registry import count_parameters


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_manifest(cfg: Config, ctx: Dist | None = None) -> pl.DataFrame:
    """The manifest of the configured data: ``data.root`` (or the cached synthetic tree), split as ``data.*`` says,
    and ``data.extra_roots`` (training only unless ``data.validate_extra_roots``). The one place a config becomes
    a train/validation split (training, notebooks, ``python -m fwi.synth --from-root``)."""
    ctx = ctx or Dist()
    root = cfg.data.root
    if root is None:
        from fwi.synth.writer import prepare_synthetic

        # Rank 0 generates (or finds) the cached tree while the others wait at the barrier, then reuse it.
        if not ctx.main:
            dist.barrier()
        root = prepare_synthetic(cfg.synth, progress=ctx.main)
        if ctx.main and ctx.world > 1:
            dist.barrier()
    extra = cfg.data.extra_roots
    roots, train_only = ([root, *extra], []) if cfg.data.validate_extra_roots else ([root], extra)
    return build_manifest(roots, train_only=train_only, val_fraction=cfg.data.val_fraction, seed=cfg.data.split_seed,
                          families=cfg.data.families, split_by=cfg.data.split_by)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int):
    """Per-optimizer-step LR schedule: linear warmup, then cosine to 1% / constant / constant for
    ``cfg.constant_fraction`` of the remaining steps and cosine to 1% after it; or torch's OneCycleLR."""
    warmup = int(cfg.warmup_fraction * total_steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(total_steps, 1),
                                                   pct_start=max(cfg.warmup_fraction, 1e-3))
    hold = int(cfg.constant_fraction * (total_steps - warmup)) if cfg.schedule == "constant_cosine" else 0
    decay_start = warmup + hold

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant" or step < decay_start:
            return 1.0
        progress = min((step - decay_start) / max(total_steps - decay_start, 1), 1.0)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class MixedBatches:
    """One epoch of file batches interleaved with on-the-fly simulated batches (when a stream is given)."""

    def __init__(self, loader: DataLoader, stream=None):
        self.loader, self.stream = loader, stream

    def __len__(self) -> int:
        return len(self.loader) + (len(self.stream) if self.stream is not None else 0)

    def __iter__(self):
        files = iter(self.loader)
        simulated = iter(self.stream) if self.stream is not None else iter(())
        yield from _interleave(files, simulated)


def _interleave(a, b):
    """Alternate items of two iterators until both are exhausted."""
    sentinel = object()
    while True:
        x, y = next(a, sentinel), next(b, sentinel)
        if x is sentinel and y is sentinel:
            return
        yield from (item for item in (x, y) if item is not sentinel)


def ema_average(decay: float):
    """EMA update with warmup: the decay ramps as ``min(decay, (1 + n) / (10 + n))`` over the first updates,
    so short runs are not dominated by the initial weights."""

    def average(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)

    return average


def reduce_accumulator(acc: MAEAccumulator, ctx: Dist) -> MAEAccumulator:
    """Sum every process's per-family error sums and counts into ``acc``."""
    if ctx.world == 1:
        return acc
    gathered: list = [None] * ctx.world
    dist.all_gather_object(gathered, (acc.abs_sum, acc.count))
    acc.reset()
    for sums, counts in gathered:
        for key in counts:
            acc._add(key, sums[key], counts[key])
    return acc


class RunLog:
    """metrics.csv (rewritten atomically each epoch), TensorBoard and optional Weights & Biases."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.path = run_dir / "metrics.csv"
        self.tb = self.wandb = None
        if cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        if cfg.train.wandb:
            try:
                import wandb
            except ImportError:
                print("warning: train.wandb=true but wandb is not installed; skipping it", file=sys.stderr)
            else:
                t = cfg.train
                self.wandb = wandb.init(mode=t.wandb_mode, project=t.wandb_project, entity=t.wandb_entity,
                                        dir=str(run_dir), name=cfg.name, config=config_to_dict(cfg))

    def log(self, history: list[dict]) -> None:
        """Write every row of ``history`` to metrics.csv; send its last row to TensorBoard and W&B."""
        with atomic_path(self.path) as tmp:
            pl.from_dicts(history, infer_schema_length=None).write_csv(tmp)
        row = history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, float | int) and self.tb is not None:
                self.tb.add_scalar(key, value, row["epoch"])
        if self.wandb is not None:
            self.wandb.log(row)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


RESUMABLE = ("train.epochs", "train.workers", "train.device", "train.max_minutes", "train.plot", "train.tensorboard",
             "train.wandb", "train.wandb_mode", "train.wandb_project", "train.wandb_entity", "train.out_dir",
             "train.compile", "train.channels_last", "train.amp", "train.amp_dtype", "data.test_dir", "synth.device",
             "synth.cache_dir", "normalize.cache_dir", "predict.", "refine.", "tune.")
"""Config keys (or section prefixes) a resumed run may change: how long, where and how fast it runs, what it logs.
Every other key fixes what the run learns (model, data and split, schedule, batch size, seed, ...)."""


def resume_conflicts(saved: Config, new: Config) -> list[str]:
    """``'key (saved -> new)'`` for every key that differs between a run's saved config and the resuming one
    and may not change on resume (see :data:`RESUMABLE`); ``train.epochs`` is fixed under onecycle, whose
    schedule is laid out over the run's total steps."""
    old = dict(flatten_config(Config, config_to_dict(saved)))
    cur = dict(flatten_config(Config, config_to_dict(new)))
    fixed = ("train.epochs",) if "onecycle" in (saved.train.schedule, new.train.schedule) else ()
    return [f"{k} ({old.get(k)!r} -> {v!r})" for k, v in cur.items() if old.get(k) != v
            and (k in fixed or not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE))]


# ------------------------------------------------------------------------------------------------- setup


@dataclass
class Data:
    """A run's data: the two splits, the training split's normalization, the epoch's batches, validation."""

    train_set: SeismicDataset
    val_set: SeismicDataset
    normalizer: Normalizer
    sampler: DistributedSampler
    batches: MixedBatches
    """File batches (augmented), interleaved with on-the-fly simulated ones when ``synth.stream_batches > 0``."""
    val_loader: DataLoader
    """This process's share of the validation split."""

    def set_epoch(self, epoch: int) -> None:
        """Data order, augmentation and the simulated stream follow (seed, epoch): a resumed run replays them."""
        self.sampler.set_epoch(epoch)
        if isinstance(self.batches.loader.dataset, AugmentedDataset):
            self.batches.loader.dataset.set_epoch(epoch)
        if self.batches.stream is not None:
            self.batches.stream.set_epoch(epoch)


def build_data(cfg: Config, ctx: Dist, *, progress: bool) -> Data:
    """The split of :func:`training_manifest`, the normalization statistics of its training part (one streaming
    pass, cached; it also finds NaN/Inf in the training files) and the loaders."""
    manifest = training_manifest(cfg, ctx)
    train_set, val_set = SeismicDataset(manifest, "train"), SeismicDataset(manifest, "val")
    if len(train_set) == 0 or len(val_set) == 0:
        raise FwiError(f"need training and validation samples, got {len(train_set)} and {len(val_set)} "
                       f"(data.val_fraction={cfg.data.val_fraction}; each family needs >= 2 files to validate)")
    train_rows = manifest.filter(pl.col("split") == "train").group_by("seismic_path").agg(pl.col("index"))
    stats = cached_stats(dict(zip(train_rows["seismic_path"].to_list(), train_rows["index"].to_list(), strict=True)),
                         cfg.normalize.cache_dir, progress=progress)
    normalizer = Normalizer.from_stats(cfg.normalize.mode, stats).to(ctx.device)

    transform = build_augment(cfg.augment)
    train_data = AugmentedDataset(train_set, transform, cfg.seed) if transform else train_set
    sampler = DistributedSampler(train_data, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    loader_kw = dict(batch_size=cfg.train.batch_size, num_workers=cfg.train.workers,
                     pin_memory=ctx.device.type == "cuda")
    # Workers are re-created every epoch so they see the epoch set on the augmenting dataset.
    train_loader = DataLoader(train_data, sampler=sampler, drop_last=True, **loader_kw)
    if len(train_loader) < cfg.train.accumulate:
        raise FwiError(f"the training split has {len(train_set)} samples: too few for train.batch_size="
                       f"{cfg.train.batch_size} x train.accumulate={cfg.train.accumulate} x {ctx.world} process(es)")
    stream = None
    if cfg.synth.stream_batches > 0:
        from fwi.synth.augment import VelocityAugment
        from fwi.synth.stream import SyntheticStream

        stream = SyntheticStream(cfg.synth.families, cfg.train.batch_size, cfg.synth.stream_batches,
                                 seed=cfg.seed * 1000 + ctx.rank, device=ctx.device,
                                 velocity_augment=VelocityAugment() if cfg.synth.stream_augment else None)
    val_loader = DataLoader(Subset(val_set, range(ctx.rank, len(val_set), ctx.world)), **loader_kw)
    return Data(train_set, val_set, normalizer, sampler, MixedBatches(train_loader, stream), val_loader)


def build_state(cfg: Config, device: torch.device, steps_per_epoch: int, *, pretrained: bool) -> TrainState:
    """A fresh model (pretrained encoder weights if configured and ``pretrained``), its EMA, AdamW, the per-step
    LR schedule over the whole run and the loss scaler."""
    model = build_model(cfg.model, pretrained=pretrained).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.train.ema_decay is not None:
        ema = AveragedModel(model, avg_fn=ema_average(cfg.train.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.train, steps_per_epoch * cfg.train.epochs)
    scaler = make_scaler(resolve_amp(cfg.train.amp, cfg.train.amp_dtype, device), device)
    return TrainState(model, optimizer, scheduler, scaler, ema)


def parallel(model: nn.Module, cfg: Config, ctx: Dist) -> nn.Module:
    """``model`` as the training step runs it: under DDP with several processes, compiled with ``train.compile``."""
    if ctx.world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                                    else None)
    return torch.compile(model) if cfg.train.compile else model


def checkpoint_to_resume(cfg: Config, run_dir: Path, resume: bool) -> dict | None:
    """``last.pt`` of the run to resume (checked against ``cfg``: :func:`resume_conflicts`), or None for a new run.

    Everything is checked before anything is written: a refused resume leaves the run as it was.
    """
    last_path = run_dir / "last.pt"
    if resume and not last_path.is_file():
        raise FwiError(f"nothing to resume: {last_path} not found")
    if not resume:
        if last_path.is_file():
            raise FwiError(f"{run_dir} already holds a run; pass --resume to continue it, or name=<new> to start "
                           "another")
        return None
    ckpt = load_checkpoint(last_path)
    conflicts = resume_conflicts(checkpoint_config(ckpt, last_path), cfg)
    if conflicts:
        raise FwiError(f"cannot resume {run_dir}: {', '.join(conflicts)} differ from its last.pt; a resumed run "
                       "may change only how long, where and how fast it runs and what it logs (train.epochs, "
                       "workers, device, max_minutes, logging); start another run with name=<new>")
    return ckpt


def end_of_epoch(cfg: Config, run_dir: Path, data: Data, state: TrainState, log: RunLog, row: dict,
                 improved: bool, kept: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Rank 0 after validation: last.pt (and best.pt) first, so metrics.csv never lists an epoch that last.pt
    does not hold; then the metrics and the plot."""
    state.history.append(row)
    ckpt = training_checkpoint(cfg, data.normalizer, state, family_names=data.train_set.family_names)
    save_checkpoint(run_dir / "last.pt", ckpt)
    if improved:
        save_checkpoint(run_dir / "best.pt", ckpt)
    log.log(state.history)
    pred, true = kept
    if cfg.train.plot and len(pred):
        from fwi.plots import plot_predictions

        plot_predictions(pred.numpy(), true.numpy(), run_dir / "plots" / f"epoch_{state.epoch:03d}.png",
                         title=f"{cfg.name} epoch {state.epoch}: val MAE {row['val_mae']:.1f} m/s")


# ------------------------------------------------------------------------------------------------- train


def train(cfg: Config, *, resume: bool = False, on_epoch: Callable[[int, float], None] | None = None,
          progress: bool = True, verbose: bool = True) -> float:
    """Train with ``cfg``; returns the best validation competition MAE (m/s) over the epochs run.

    ``resume`` continues ``<out_dir>/<name>/last.pt`` from the epoch after it, after checking that the config
    changed only in keys a resume may change (:data:`RESUMABLE`). ``on_epoch(epoch, val_mae)`` is called after
    every validation (fwi.tune reports to its pruner there; it may raise to stop). ``progress``: tqdm bars;
    ``verbose``: the per-epoch lines (the final summary is always printed).
    """
    ctx = init_distributed(cfg.train.device)
    run_dir = cfg.train.out_dir / cfg.name
    # Claimed before anything is read or written: a second run of this name stops here.
    with exclusive(run_dir / ".lock", f"run folder {run_dir}") if ctx.main else nullcontext():
        ckpt = checkpoint_to_resume(cfg, run_dir, resume)
        seed_everything(cfg.seed)
        data = build_data(cfg, ctx, progress=progress and ctx.main)
        state = build_state(cfg, ctx.device, len(data.batches) // cfg.train.accumulate, pretrained=ckpt is None)
        if ckpt is not None:  # a resume loads every weight from last.pt: no pretrained source is needed
            restore_training(ckpt, state, source=run_dir / "last.pt")
        log = RunLog(run_dir, cfg) if ctx.main else None
        if log is not None:
            save_config(cfg, run_dir / "config.yaml")
        try:
            best = fit(cfg, ctx, run_dir, data, state, log, on_epoch=on_epoch, progress=progress and ctx.main,
                       verbose=verbose and ctx.main, resumed=ckpt is not None)
        finally:
            if log is not None:
                log.close()
    if ctx.main:
        print(f"best val MAE {best:.1f} m/s\ncheckpoint: {run_dir / 'best.pt'} (last: {run_dir / 'last.pt'})\n"
              f"metrics: {run_dir / 'metrics.csv'}\nplots: {run_dir / 'plots'}")
    return best


def fit(cfg: Config, ctx: Dist, run_dir: Path, data: Data, state: TrainState, log: RunLog | None, *,
        on_epoch: Callable[[int, float], None] | None, progress: bool, verbose: bool, resumed: bool) -> float:
    """The epochs from ``state.epoch + 1`` on: train, validate (the EMA weights, ``train.val_tta``), save, log.
    Returns the best validation MAE (m/s)."""
    amp_dtype = resolve_amp(cfg.train.amp, cfg.train.amp_dtype, ctx.device)
    learner = Predictor(parallel(state.model, cfg, ctx), data.normalizer, amp_dtype=amp_dtype)  # trained
    predictor = Predictor(state.ema.module if state.ema is not None else state.model, data.normalizer,
                          tta=cfg.train.val_tta, amp_dtype=amp_dtype)  # validated: predicts as fwi.predict does
    loss_fn = VelocityLoss.from_config(cfg.loss)
    if verbose:
        print(f"{cfg.model.name}: {count_parameters(state.model) / 1e6:.2f} M parameters; {len(data.train_set)} train"
              f" / {len(data.val_set)} val samples; device {ctx.device}; {ctx.world} process(es); amp "
              f"{describe_amp(amp_dtype, ctx.device)}; validation tta {cfg.train.val_tta}")
        if resumed:
            print(f"resumed from epoch {state.epoch + 1} of {run_dir / 'last.pt'}", flush=True)
    started = time.monotonic()
    for epoch in range(state.epoch + 1, cfg.train.epochs):
        t0 = time.monotonic()
        data.set_epoch(epoch)
        losses = train_one_epoch(learner, data.batches, loss_fn, state, accumulate=cfg.train.accumulate,
                                 grad_clip=cfg.train.grad_clip, progress=progress)
        if not math.isfinite(losses["loss"]):
            raise FwiError(f"training diverged: mean loss {losses['loss']} in epoch {epoch + 1}; lower train.lr or "
                           f"check the data ({run_dir / 'last.pt'} holds the last good epoch)")
        acc, kept = evaluate(predictor, data.val_loader, data.train_set.family_names, progress=progress)
        maes = reduce_accumulator(acc, ctx).compute()
        val_mae = maes[ALL]
        if not math.isfinite(val_mae):
            raise FwiError(f"validation MAE is {val_mae} after epoch {epoch + 1}: the model predicts non-finite "
                           "velocities (check the validation data with python -m fwi.data --check-values; "
                           f"{run_dir / 'last.pt'} holds the last good epoch)")
        improved, state.best, state.epoch = val_mae < state.best, min(state.best, val_mae), epoch
        if log is not None:
            row = {"epoch": epoch, "step": state.step, "lr": state.scheduler.get_last_lr()[0],
                   **{f"train_{k}": v for k, v in losses.items()}, "val_mae": val_mae,
                   **{f"val_mae_{k}": v for k, v in maes.items() if k != ALL}, "seconds": time.monotonic() - t0}
            end_of_epoch(cfg, run_dir, data, state, log, row, improved, kept)
        if verbose:
            families = "  ".join(f"{k} {v:.0f}" for k, v in maes.items() if k != ALL)
            print(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {losses['loss']:.4f}  val MAE {val_mae:.1f} m/s  "
                  f"({families})  {time.monotonic() - t0:.0f}s", flush=True)
        if on_epoch is not None:
            on_epoch(epoch, val_mae)
        if cfg.train.max_minutes is not None and time.monotonic() - started > 60 * cfg.train.max_minutes:
            if verbose:
                print(f"stopping: train.max_minutes={cfg.train.max_minutes} reached")
            break
    return state.best


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.train", "Train a seismic-to-velocity network (see configs/).")
    parser.add_argument("--resume", action="store_true", help="continue runs/<name>/last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines, only the "
                        "final summary (and errors)")
    args = parser.parse_intermixed_args(argv)
    cfg = resolve_config(args, notes=lambda c: [amp_note("train", c.train)])
    train(cfg, resume=args.resume, progress=not args.quiet, verbose=not args.quiet)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
