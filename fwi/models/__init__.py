"""Seismic-to-velocity models, built by name: ``build_model(cfg.model)``.

Every model maps normalized seismic ``[B, 5, 1000, 70]`` to velocity ``[B, 1, 70, 70]`` in m/s, bounded
to [VMIN, VMAX] by a squashing output head.
"""

from fwi.models.registry import MODELS, build_model, register_model

# Importing the model modules fills the registry.
from fwi.models import inversionnet, timm_unet  # noqa: E402, F401  isort: skip

__all__ = ["MODELS", "build_model", "register_model"]
