"""Checkpoints: one file holds the resolved config, the weights (raw and EMA), the normalization
buffers, the optimizer/scheduler state and the metrics history. One loader serves train and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fwi.config import Config, config_to_dict
from fwi.data.normalize import Normalizer
from fwi.errors import FwiError
from fwi.io import atomic_path
from fwi.models import build_model

FORMAT_VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def make_checkpoint_state(cfg: Config, model: nn.Module, normalizer: Normalizer, *,
                          ema: nn.Module | None = None, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict :func:`restore_model` reads: resolved config, weights, normalizer buffers.

    ``model`` may be wrapped (DDP, torch.compile); ``ema`` is the averaged module (``AveragedModel.module``)
    or None. ``extra`` adds training state (epoch, step, optimizer, scheduler, history, family_names, ...).
    """
    return {"config": config_to_dict(cfg),
            "model": unwrap(model).state_dict(),
            "ema": unwrap(ema).state_dict() if ema is not None else None,
            "normalizer_mode": normalizer.mode,
            "normalizer": {"mean": normalizer.mean.detach().cpu(), "std": normalizer.std.detach().cpu()},
            **extra}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` (plus the format version) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU; a missing, truncated or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FwiError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise FwiError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise FwiError(f"checkpoint {path} is not an fwi checkpoint (format {FORMAT_VERSION})")
    return state


def restore_model(state: dict[str, Any], *, use_ema: bool = True) -> tuple[nn.Module, Normalizer, Config]:
    """Rebuild the model (EMA weights when present and ``use_ema``), its normalizer and its config."""
    cfg = Config.model_validate(state["config"])
    model = build_model(cfg.model, pretrained=False)  # the state dict below replaces any pretrained weights
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    model.load_state_dict(weights)
    normalizer = Normalizer(state["normalizer_mode"], state["normalizer"]["mean"], state["normalizer"]["std"])
    return model.eval(), normalizer.eval(), cfg
