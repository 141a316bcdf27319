"""The one inference path: raw seismic -> normalizer -> network (-> test-time augmentation) -> velocity in m/s.

:class:`Predictor` bundles a network with the normalization it was trained with, the TTA and the autocast dtype.
Training runs its :meth:`~Predictor.single_pass` (with gradients), validation (:func:`fwi.engine.evaluate`),
prediction (``python -m fwi.predict``), the notebooks and the benchmarks call it; nothing else feeds seismic to a
network. So the validation score is computed exactly as the submission is (``train.val_tta`` = ``predict.tta``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fwi.checkpoint import load_checkpoint, restore_model
from fwi.config import Config
from fwi.engine import autocast
from fwi.errors import FwiError
from fwi.flip import flip_seismic, flip_velocity
from fwi.physics.acquisition import VMAX, VMIN

TTA = ("none", "flip")
"""Test-time augmentations: ``flip`` also predicts the mirrored survey (:mod:`fwi.flip`)."""


def check_tta(tta: str) -> None:
    """Reject an unknown test-time augmentation name with a one-line error."""
    if tta not in TTA:
        raise FwiError(f"unknown tta '{tta}' (predict.tta, train.val_tta): use one of {', '.join(TTA)}")


class Predictor(nn.Module):
    """Normalizer + network + TTA: ``forward(raw seismic [B, 5, 1000, 70]) -> velocity [B, 1, 70, 70]`` m/s.

    ``model`` maps normalized seismic to m/s (it may be wrapped by DDP or torch.compile); ``normalizer`` is the
    one it was trained with; ``tta``: one of :data:`TTA`; ``amp_dtype``: autocast dtype of the network's forward
    passes (:func:`fwi.engine.resolve_amp`; None: full precision). Input goes to :attr:`device` first.
    """

    def __init__(self, model: nn.Module, normalizer: nn.Module, *, tta: str = "none",
                 amp_dtype: torch.dtype | None = None):
        super().__init__()
        check_tta(tta)
        self.model, self.normalizer = model, normalizer
        self.tta, self.amp_dtype = tta, amp_dtype

    @property
    def device(self) -> torch.device:
        """Where the normalizer's statistics (and so the network) live."""
        return self.normalizer.mean.device

    def single_pass(self, seismic: torch.Tensor) -> torch.Tensor:
        """One forward pass, no TTA, no clipping, gradients kept (the training forward): ``[B, 1, 70, 70]`` m/s in
        the network's output dtype."""
        seismic = seismic.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp_dtype):
            return self.model(self.normalizer(seismic))

    @torch.no_grad()
    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        """The prediction that is scored and submitted: float32 ``[B, 1, 70, 70]`` m/s clipped to [VMIN, VMAX];
        with ``tta="flip"`` the mean of the direct prediction and that of the mirrored survey mirrored back."""
        seismic = seismic.to(self.device, non_blocking=True)
        pred = self.single_pass(seismic).float()
        if self.tta == "flip":
            pred = (pred + flip_velocity(self.single_pass(flip_seismic(seismic)).float())) / 2
        return pred.clamp_(VMIN, VMAX)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: torch.device | str = "cpu", use_ema: bool = True,
                        tta: str = "none", amp_dtype: torch.dtype | None = None) -> tuple[Predictor, Config]:
        """The predictor of a checkpoint (its EMA weights when present and ``use_ema``, its own normalization), in
        eval mode on ``device``, and the checkpoint's config. Bad files are one-line :class:`FwiError` s."""
        model, normalizer, cfg = restore_model(load_checkpoint(path), use_ema=use_ema, source=path)
        return cls(model, normalizer, tta=tta, amp_dtype=amp_dtype).to(device).eval(), cfg
