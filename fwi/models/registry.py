"""Model registry: ``@register_model`` on a builder, ``build_model(cfg)`` by name."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fwi.errors import ConfigError
from fwi.physics.acquisition import unit_to_velocity

MODELS: dict[str, Callable[..., nn.Module]] = {}
"""Registered builders by name; each takes the ``ModelConfig`` and returns an ``nn.Module``."""


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder(model_cfg) -> nn.Module`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        MODELS[name] = builder
        return builder

    return wrap


def build_model(model_cfg, *, pretrained: bool = True) -> nn.Module:
    """The model named by ``model_cfg.name`` (a :class:`fwi.config.ModelConfig`).

    ``pretrained=False`` builds the same architecture without fetching pretrained weights (``model.pretrained``,
    ``model.encoder_weights``): the way to restore a checkpoint, whose state dict replaces them.
    """
    if model_cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{model_cfg.name}' (config key model.name); "
                          f"valid: {', '.join(sorted(MODELS))}")
    if not pretrained and getattr(model_cfg, "pretrained", False):
        model_cfg = model_cfg.model_copy(update={"pretrained": False, "encoder_weights": None})
    return MODELS[model_cfg.name](model_cfg)


def to_velocity(logits: torch.Tensor) -> torch.Tensor:
    """Map unbounded network outputs to velocity in m/s, strictly inside (VMIN, VMAX).

    ``v = VMIN + (VMAX - VMIN) * sigmoid(x)``: the output can never leave the competition's range, and
    the gradient never vanishes abruptly as it would with clipping.
    """
    return unit_to_velocity(torch.sigmoid(logits.float()))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
