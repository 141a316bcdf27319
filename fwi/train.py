"""``python -m fwi.train``: train a seismic-to-velocity network.

``train(cfg) -> best validation MAE (m/s)`` is the whole job and can be called repeatedly in one process
(fwi.tune does). Under ``torchrun`` it trains with DistributedDataParallel, one process per device.
Outputs go to ``<train.out_dir>/<name>/``: ``config.yaml``, ``last.pt`` and ``best.pt`` (atomic, every
epoch), ``metrics.csv``, ``plots/epoch_NNN.png`` and TensorBoard logs in ``tb/``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from fwi.checkpoint import load_checkpoint, make_checkpoint_state, save_checkpoint
from fwi.cli import config_parser, main_guard, resolve_config
from fwi.config import Config, config_to_dict, save_config
from fwi.data.augment import AugmentedDataset, build_augment
from fwi.data.dataset import SeismicDataset
from fwi.data.manifest import build_manifest
from fwi.data.normalize import Normalizer, cached_stats
from fwi.device import resolve_device
from fwi.engine import StepState, evaluate, train_one_epoch
from fwi.errors import FwiError
from fwi.io import atomic_path
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
    """The manifest of the configured data: ``data.root`` (or the cached synthetic tree) and ``data.extra_roots``,
    split as ``data.*`` says. The one place a config becomes a train/validation split (training, notebooks)."""
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
    return build_manifest([root, *cfg.data.extra_roots], val_fraction=cfg.data.val_fraction,
                          seed=cfg.data.split_seed, families=cfg.data.families, split_by=cfg.data.split_by)


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
    """metrics.csv (rewritten atomically each epoch), TensorBoard and optional offline wandb."""

    def __init__(self, run_dir: Path, cfg: Config, history: list[dict]):
        self.path = run_dir / "metrics.csv"
        self.history = history
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
                self.wandb = wandb.init(mode="offline", dir=str(run_dir), name=cfg.name, config=config_to_dict(cfg))

    def log(self, row: dict) -> None:
        self.history.append(row)
        with atomic_path(self.path) as tmp:
            pl.from_dicts(self.history, infer_schema_length=None).write_csv(tmp)
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


def train(cfg: Config, *, resume: bool = False, on_epoch: Callable[[int, float], None] | None = None,
          progress: bool = True) -> float:
    """Train with ``cfg``; returns the best validation competition MAE (m/s) over the epochs run.

    ``resume`` continues ``<out_dir>/<name>/last.pt`` from the epoch after it. ``on_epoch(epoch, val_mae)``
    is called after every validation (fwi.tune reports to its pruner there; it may raise to stop).
    """
    ctx = init_distributed(cfg.train.device)
    device = ctx.device
    run_dir = cfg.train.out_dir / cfg.name
    last_path = run_dir / "last.pt"
    if resume and not last_path.is_file():
        raise FwiError(f"nothing to resume: {last_path} not found")
    if not resume and last_path.is_file():
        raise FwiError(f"{run_dir} already holds a run; pass --resume to continue it, or name=<new> to start another")
    seed_everything(cfg.seed)

    manifest = training_manifest(cfg, ctx)
    train_set, val_set = SeismicDataset(manifest, "train"), SeismicDataset(manifest, "val")
    if len(train_set) == 0 or len(val_set) == 0:
        raise FwiError(f"need training and validation samples, got {len(train_set)} and {len(val_set)} "
                       f"(data.val_fraction={cfg.data.val_fraction}; each family needs >= 2 files to validate)")
    train_rows = manifest.filter(pl.col("split") == "train").group_by("seismic_path").agg(pl.col("index"))
    stats = cached_stats(dict(zip(train_rows["seismic_path"].to_list(), train_rows["index"].to_list(), strict=True)),
                         cfg.normalize.cache_dir, progress=progress and ctx.main)
    normalizer = Normalizer.from_stats(cfg.normalize.mode, stats).to(device)

    transform = build_augment(cfg.augment)
    train_data = AugmentedDataset(train_set, transform, cfg.seed) if transform else train_set
    sampler = DistributedSampler(train_data, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    loader_kw = dict(batch_size=cfg.train.batch_size, num_workers=cfg.train.workers,
                     pin_memory=device.type == "cuda")
    # Workers are re-created every epoch so they see the epoch set on the augmenting dataset.
    train_loader = DataLoader(train_data, sampler=sampler, drop_last=True, **loader_kw)
    stream = None
    if cfg.synth.stream_batches > 0:
        from fwi.synth.augment import VelocityAugment
        from fwi.synth.stream import SyntheticStream

        stream = SyntheticStream(cfg.synth.families, cfg.train.batch_size, cfg.synth.stream_batches,
                                 seed=cfg.seed * 1000 + ctx.rank, device=device,
                                 velocity_augment=VelocityAugment() if cfg.synth.stream_augment else None)
    batches = MixedBatches(train_loader, stream)
    if len(train_loader) < cfg.train.accumulate:
        raise FwiError(f"the training split has {len(train_set)} samples: too few for train.batch_size="
                       f"{cfg.train.batch_size} x train.accumulate={cfg.train.accumulate} x {ctx.world} process(es)")
    val_loader = DataLoader(Subset(val_set, range(ctx.rank, len(val_set), ctx.world)), **loader_kw)

    model = build_model(cfg.model).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.train.ema_decay is not None:
        ema = AveragedModel(model, avg_fn=ema_average(cfg.train.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    steps_per_epoch = len(batches) // cfg.train.accumulate
    scheduler = make_scheduler(optimizer, cfg.train, steps_per_epoch * cfg.train.epochs)
    loss_fn = VelocityLoss.from_config(cfg.loss)
    state, start_epoch, history, best = StepState(), 0, [], math.inf
    if resume:
        ckpt = load_checkpoint(last_path)
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema_state") is not None:
            ema.load_state_dict(ckpt["ema_state"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state.step, start_epoch = ckpt["step"], ckpt["epoch"] + 1
        history, best = ckpt["history"], ckpt["best"]
    net = model
    if ctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    if cfg.train.compile:
        net = torch.compile(net)

    log = None
    if ctx.main:
        save_config(cfg, run_dir / "config.yaml")
        log = RunLog(run_dir, cfg, history)
        print(f"{cfg.model.name}: {count_parameters(model) / 1e6:.2f} M parameters; {len(train_set)} train / "
              f"{len(val_set)} val samples; device {device}; {ctx.world} process(es)")
    started = time.monotonic()
    try:
        for epoch in range(start_epoch, cfg.train.epochs):
            sampler.set_epoch(epoch)
            if isinstance(train_data, AugmentedDataset):
                train_data.set_epoch(epoch)
            if stream is not None:
                stream.set_epoch(epoch)
            t0 = time.monotonic()
            losses = train_one_epoch(net, batches, normalizer, loss_fn, optimizer, scheduler, state,
                                     device=device, amp=cfg.train.amp, accumulate=cfg.train.accumulate,
                                     grad_clip=cfg.train.grad_clip, ema=ema, progress=progress and ctx.main)
            if not math.isfinite(losses["loss"]):
                raise FwiError(f"training diverged: mean loss {losses['loss']} in epoch {epoch + 1}; lower train.lr "
                               f"or check the data ({last_path} holds the last good epoch)")
            eval_model = ema.module if ema is not None else model
            acc, (pred, true) = evaluate(eval_model, val_loader, normalizer, train_set.family_names, device=device,
                                         amp=cfg.train.amp, progress=progress and ctx.main)
            maes = reduce_accumulator(acc, ctx).compute()
            val_mae = maes[ALL]
            improved = val_mae < best
            best = min(best, val_mae)
            if ctx.main:
                row = {"epoch": epoch, "step": state.step, "lr": scheduler.get_last_lr()[0],
                       **{f"train_{k}": v for k, v in losses.items()}, "val_mae": val_mae,
                       **{f"val_mae_{k}": v for k, v in maes.items() if k != ALL},
                       "seconds": time.monotonic() - t0}
                log.log(row)
                if cfg.train.plot and len(pred):
                    from fwi.plots import plot_predictions

                    plot_predictions(pred.numpy(), true.numpy(), run_dir / "plots" / f"epoch_{epoch:03d}.png",
                                     title=f"{cfg.name} epoch {epoch}: val MAE {val_mae:.1f} m/s")
                ckpt = make_checkpoint_state(
                    cfg, model, normalizer, ema=ema.module if ema is not None else None, epoch=epoch,
                    step=state.step, ema_state=ema.state_dict() if ema is not None else None,
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    family_names=train_set.family_names, history=log.history, best=best)
                save_checkpoint(last_path, ckpt)
                if improved:
                    save_checkpoint(run_dir / "best.pt", ckpt)
                families = "  ".join(f"{k} {v:.0f}" for k, v in maes.items() if k != ALL)
                print(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {losses['loss']:.4f}  val MAE {val_mae:.1f} m/s"
                      f"  ({families})  {row['seconds']:.0f}s", flush=True)
            if on_epoch is not None:
                on_epoch(epoch, val_mae)
            if cfg.train.max_minutes is not None and time.monotonic() - started > 60 * cfg.train.max_minutes:
                if ctx.main:
                    print(f"stopping: train.max_minutes={cfg.train.max_minutes} reached")
                break
    finally:
        if log is not None:
            log.close()
    if ctx.main:
        print(f"best val MAE {best:.1f} m/s\ncheckpoint: {run_dir / 'best.pt'} (last: {last_path})\n"
              f"metrics: {run_dir / 'metrics.csv'}\nplots: {run_dir / 'plots'}")
    return best


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.train", "Train a seismic-to-velocity network (see configs/).")
    parser.add_argument("--resume", action="store_true", help="continue runs/<name>/last.pt")
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    train(cfg, resume=args.resume)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
