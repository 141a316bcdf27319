"""The inner loops (one training epoch, one evaluation pass), the state they update, and mixed precision.
Everything else lives in fwi.train."""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from fwi.device import resolve_device
from fwi.errors import FwiError
from fwi.losses import VelocityLoss
from fwi.metrics import MAEAccumulator

if TYPE_CHECKING:  # fwi.inference imports this module (autocast)
    from fwi.inference import Predictor


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""``amp_dtype`` config values -> autocast dtypes."""


def resolve_amp(enabled: bool, choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp``/``predict.amp`` and their ``amp_dtype`` on ``device`` (None: off).

    ``auto``: bf16 on a CUDA GPU that computes it natively (Ampere and newer), else fp16 (T4, P100, V100: train
    it with a GradScaler, see :func:`make_scaler`); off on the CPU. ``bf16``/``fp16`` force that dtype, on the
    CPU too (slow there; it is how the fp16 path is tested without a GPU).
    """
    if not enabled:
        return None
    if choice == "auto":
        if device.type != "cuda":
            return None
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    return AMP_DTYPES[choice]


def describe_amp(dtype: torch.dtype | None, device: torch.device, *, training: bool = True) -> str:
    """``'fp16 autocast + GradScaler on cuda'``, ``'off on cpu'``, ... (for logs and --print-config)."""
    if dtype is None:
        return f"off on {device}"
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    return f"{name} autocast{' + GradScaler' if training and dtype == torch.float16 else ''} on {device}"


def amp_note(section: str, cfg) -> str:
    """What ``<section>.amp_dtype`` means on ``<section>.device`` of this machine (a --print-config note).

    ``cfg`` is the train or predict config section (fields ``amp``, ``amp_dtype``, ``device``).
    """
    try:
        device = resolve_device(cfg.device)
    except FwiError as exc:
        return f"{section}.amp_dtype={cfg.amp_dtype}: {exc}"
    dtype = resolve_amp(cfg.amp, cfg.amp_dtype, device)
    return f"{section}.amp_dtype={cfg.amp_dtype} here: {describe_amp(dtype, device, training=section == 'train')}"


def make_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (fp16 gradients underflow without one; bf16 has fp32's range).

    A disabled scaler passes everything through, so the training step has one code path.
    """
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device`` (see :func:`resolve_amp`); a no-op for None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class TrainState:
    """Everything a training run updates, and what its checkpoints save and restore
    (:func:`fwi.checkpoint.training_checkpoint`, :func:`fwi.checkpoint.restore_training`)."""

    model: nn.Module
    """The network being trained (the plain module, not its DDP or torch.compile wrapper)."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    """Stepped after every optimizer step."""
    scaler: torch.amp.GradScaler
    """:func:`make_scaler`: enabled for fp16 only."""
    ema: AveragedModel | None = None
    """Exponential moving average of the weights (validated and saved for prediction), or None."""
    step: int = 0
    """Optimizer steps taken (the scheduler's and the physics loss's clock)."""
    epoch: int = -1
    """Last finished epoch (-1: none yet)."""
    history: list[dict] = field(default_factory=list)
    """One row of metrics per finished epoch (metrics.csv)."""
    best: float = math.inf
    """Best validation MAE so far, m/s."""


def train_one_epoch(learner: Predictor, batches: Iterable, loss_fn: VelocityLoss, state: TrainState, *,
                    accumulate: int = 1, grad_clip: float | None = None, progress: bool = True) -> dict[str, float]:
    """One pass over ``batches`` of ``(seismic [B,5,1000,70], velocity [B,1,70,70] m/s, family [B])``.

    ``learner`` wraps the network being trained (its :meth:`~fwi.inference.Predictor.single_pass` is the forward,
    under its autocast dtype); ``state.scaler`` scales the loss for fp16 and skips the optimizer step when the
    scaled gradients overflowed. The scheduler is stepped after every optimizer step (not per epoch), skipped or
    not, so the schedule follows ``state.step``. Returns the mean of each loss part over the batches where it was
    computed.
    """
    learner.train()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    bar = tqdm(batches, desc="train", unit="batch", leave=False, disable=not progress)
    state.optimizer.zero_grad(set_to_none=True)
    for i, (seismic, velocity, _family) in enumerate(bar):
        seismic = seismic.to(learner.device, non_blocking=True)
        pred = learner.single_pass(seismic)  # [B, 1, 70, 70] m/s
        loss, parts = loss_fn(pred, velocity.to(learner.device, non_blocking=True), seismic, state.step)
        state.scaler.scale(loss / accumulate).backward()
        if (i + 1) % accumulate == 0:
            if grad_clip is not None:
                state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            state.optimizer.zero_grad(set_to_none=True)
            state.scheduler.step()
            state.step += 1
            if state.ema is not None:
                state.ema.update_parameters(state.model)
        for key, value in {"loss": loss.detach(), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
        if progress and i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{state.scheduler.get_last_lr()[0]:.2e}")
    return {key: float(value) / counts[key] for key, value in sums.items()}


@torch.no_grad()
def evaluate(predictor: Predictor, loader: Iterable, family_names: list[str], *, keep: int = 4,
             progress: bool = True) -> tuple[MAEAccumulator, tuple[torch.Tensor, torch.Tensor]]:
    """Competition MAE (m/s, odd columns) per family of ``predictor``'s predictions (its TTA, clipped: what
    predict submits) over ``loader``.

    Returns the accumulator (call ``compute()``) and the first ``keep`` (prediction, truth) maps
    ``[keep, 1, 70, 70]`` for plots.
    """
    predictor.eval()
    acc = MAEAccumulator(family_names)
    kept_pred, kept_true = [], []
    for seismic, velocity, family in tqdm(loader, desc="val", unit="batch", leave=False, disable=not progress):
        pred = predictor(seismic).cpu()
        acc.update(pred, velocity, family)
        if sum(len(p) for p in kept_pred) < keep:
            kept_pred.append(pred)
            kept_true.append(velocity)
    if not kept_pred:
        return acc, (torch.empty(0, 1, 70, 70), torch.empty(0, 1, 70, 70))
    return acc, (torch.cat(kept_pred)[:keep], torch.cat(kept_true)[:keep])
