"""The inner loops: one training epoch and one evaluation pass. Everything else lives in fwi.train."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from fwi.losses import VelocityLoss
from fwi.metrics import MAEAccumulator


@dataclass
class StepState:
    """What the loop mutates across epochs: optimizer step count (schedulers, physics cadence)."""

    step: int = 0


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_one_epoch(model: nn.Module, loader: Iterable, normalizer: nn.Module, loss_fn: VelocityLoss,
                    optimizer: torch.optim.Optimizer, scheduler, state: StepState, *, device: torch.device,
                    amp: bool, accumulate: int = 1, grad_clip: float | None = None, ema=None,
                    progress: bool = True) -> dict[str, float]:
    """One pass over ``loader`` of ``(seismic [B,5,1000,70], velocity [B,1,70,70] m/s, family [B])``.

    The scheduler is stepped after every optimizer step (not per epoch). Returns the mean of each loss
    part over the batches where it was computed.
    """
    model.train()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    bar = tqdm(loader, desc="train", unit="batch", leave=False, disable=not progress)
    optimizer.zero_grad(set_to_none=True)
    for i, (seismic, velocity, _family) in enumerate(bar):
        seismic = seismic.to(device, non_blocking=True)
        velocity = velocity.to(device, non_blocking=True)
        with autocast(device, amp):
            pred = model(normalizer(seismic))  # [B, 1, 70, 70] m/s
        loss, parts = loss_fn(pred, velocity, seismic, state.step)
        (loss / accumulate).backward()
        if (i + 1) % accumulate == 0:
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state.step += 1
            if ema is not None:
                ema.update_parameters(model)
        for key, value in {"loss": loss.detach(), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
        if progress and i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return {key: float(value) / counts[key] for key, value in sums.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, normalizer: nn.Module, family_names: list[str], *,
             device: torch.device, amp: bool, keep: int = 4, progress: bool = True,
             ) -> tuple[MAEAccumulator, tuple[torch.Tensor, torch.Tensor]]:
    """Competition MAE (m/s, odd columns) per family over ``loader``.

    Returns the accumulator (call ``compute()``) and the first ``keep`` (prediction, truth) maps
    ``[keep, 1, 70, 70]`` for plots.
    """
    model.eval()
    acc = MAEAccumulator(family_names)
    kept_pred, kept_true = [], []
    for seismic, velocity, family in tqdm(loader, desc="val", unit="batch", leave=False, disable=not progress):
        seismic = seismic.to(device, non_blocking=True)
        with autocast(device, amp):
            pred = model(normalizer(seismic))
        pred = pred.float().cpu()
        acc.update(pred, velocity, family)
        if sum(len(p) for p in kept_pred) < keep:
            kept_pred.append(pred)
            kept_true.append(velocity)
    if not kept_pred:
        return acc, (torch.empty(0, 1, 70, 70), torch.empty(0, 1, 70, 70))
    return acc, (torch.cat(kept_pred)[:keep], torch.cat(kept_true)[:keep])
