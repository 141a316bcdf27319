"""Checkpoints: the format, both ways. One file holds the resolved config, the weights (raw and EMA), the
normalization buffers and, in a training checkpoint, the optimizer, scheduler and loss-scaler state, the EMA's
update count and the metrics history. :func:`make_checkpoint_state` and :func:`restore_model` write and read
what inference needs; :func:`training_checkpoint` and :func:`restore_training` add what a resumed run needs.
One loader serves train and predict.

Everything saved is tensors and plain values (dicts, lists, str, numbers, None), so every checkpoint loads
with ``torch.load(..., weights_only=True)``: a file holding any other Python object is refused before any of
it runs (an ordinary pickle can execute arbitrary code while loading, and checkpoints are shared).
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError
from torch import nn

from fwi.config import Config, config_to_dict
from fwi.data.normalize import Normalizer
from fwi.errors import FwiError
from fwi.io import atomic_path
from fwi.models import build_model

if TYPE_CHECKING:
    from fwi.engine import TrainState

FORMAT_VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def make_checkpoint_state(cfg: Config, model: nn.Module, normalizer: Normalizer, *,
                          ema: nn.Module | None = None, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict :func:`restore_model` reads: resolved config, weights, normalizer buffers.

    ``model`` may be wrapped (DDP, torch.compile); ``ema`` is the averaged module (``AveragedModel.module``)
    or None. ``extra``: more entries (:func:`training_checkpoint` adds the training state this way).
    """
    return {"config": config_to_dict(cfg),
            "model": unwrap(model).state_dict(),
            "ema": unwrap(ema).state_dict() if ema is not None else None,
            "normalizer_mode": normalizer.mode,
            "normalizer": {"mean": normalizer.mean.detach().cpu(), "std": normalizer.std.detach().cpu()},
            **extra}


def training_checkpoint(cfg: Config, normalizer: Normalizer, state: TrainState, *,
                        family_names: list[str]) -> dict[str, Any]:
    """The checkpoint of a training run after ``state.epoch``: :func:`make_checkpoint_state` plus what
    :func:`restore_training` needs to go on exactly where the run stopped.

    The EMA weights are stored once, as ``ema`` (what predict uses), with the EMA's update count beside them.
    """
    ema = state.ema
    return make_checkpoint_state(
        cfg, state.model, normalizer, ema=ema.module if ema is not None else None,
        ema_updates=int(ema.n_averaged) if ema is not None else None, optimizer=state.optimizer.state_dict(),
        scheduler=state.scheduler.state_dict(), scaler=state.scaler.state_dict() if state.scaler.is_enabled() else None,
        epoch=state.epoch, step=state.step, history=state.history, best=state.best, family_names=family_names)


REQUIRED = ("config", "model", "normalizer_mode", "normalizer")
"""Keys every checkpoint has."""
TRAINING = ("epoch", "step", "optimizer", "scheduler", "history", "best", "ema_updates")
"""Keys a training checkpoint adds (:func:`training_checkpoint`)."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` (plus the format version) to ``path`` atomically.

    ``state`` must hold tensors and plain values only (see the module docstring); the file is written through a
    Python file object so that a full disk surfaces as ``OSError`` (a one-line error from :mod:`fwi.io`).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)


def _refusal(path: Path, exc: pickle.UnpicklingError) -> str:
    found = re.search(r"unsupported GLOBAL (\S+)", str(exc))
    what = f"a Python object ({found[1]})" if found else "pickled data that is not tensors and plain values"
    return (f"checkpoint {path} refused: it holds {what}; loading it could run code, so only weights-only "
            "checkpoints load (re-export it from a trusted copy with python -m fwi.export)")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU, tensors and plain values only (``weights_only=True``).

    A missing, truncated, foreign or unsafe file is a one-line :class:`FwiError`; nothing in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FwiError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FwiError(_refusal(path, exc)) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... on damaged files
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise FwiError(f"checkpoint {path} is unreadable, truncated or not a torch file ({type(exc).__name__}: "
                       f"{first})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise FwiError(f"checkpoint {path} is not an fwi checkpoint (format {FORMAT_VERSION})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise FwiError(f"checkpoint {path} is incomplete: no {', '.join(missing)}")
    return state


def checkpoint_config(state: dict[str, Any], source: str | Path = "checkpoint") -> Config:
    """The resolved config saved in a checkpoint; one line if this version of the schema rejects it."""
    try:
        return Config.model_validate(state["config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise FwiError(f"{source}: its saved config does not fit this version of fwi ({key}: {first['msg']})") from None


def restore_model(state: dict[str, Any], *, use_ema: bool = True,
                  source: str | Path = "checkpoint") -> tuple[nn.Module, Normalizer, Config]:
    """Rebuild the model (EMA weights when present and ``use_ema``), its normalizer and its config.

    ``source`` names the checkpoint in error messages (weights that do not fit the saved model config).
    """
    cfg = checkpoint_config(state, source)
    model = build_model(cfg.model, pretrained=False)  # the state dict below replaces any pretrained weights
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FwiError(f"{source}: its weights do not fit its model config ({first})") from None
    normalizer = Normalizer(state["normalizer_mode"], state["normalizer"]["mean"], state["normalizer"]["std"])
    return model.eval(), normalizer.eval(), cfg


def restore_training(ckpt: dict[str, Any], state: TrainState, *, source: str | Path = "checkpoint") -> None:
    """Load a training checkpoint into freshly built training objects ``state`` (same config): raw and EMA
    weights, optimizer, scheduler, loss scaler, step, epoch, history and best score.

    A checkpoint without training state (an export, or one of an older format) is a one-line :class:`FwiError`.
    """
    missing = [k for k in TRAINING if k not in ckpt]
    if missing:
        raise FwiError(f"{source} lacks the training state a resume needs (no {', '.join(missing)}): it is an export "
                       "or was written by an older fwi; start a new run with name=<new>")
    unwrap(state.model).load_state_dict(ckpt["model"])
    if state.ema is not None:
        unwrap(state.ema.module).load_state_dict(ckpt["ema"])
        state.ema.n_averaged.fill_(ckpt["ema_updates"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    if state.scaler.is_enabled() and ckpt.get("scaler") is not None:
        state.scaler.load_state_dict(ckpt["scaler"])
    state.step, state.epoch, state.history, state.best = ckpt["step"], ckpt["epoch"], ckpt["history"], ckpt["best"]
