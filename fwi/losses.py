"""Training losses: L1 on velocity (scaled to [0, 1]) and the physics-informed seismic misfit.

The physics term simulates the predicted velocity with the project's exact simulator and compares it
with the observed (raw) seismic: ``misfit = mean|simulate(v_pred) - d_obs| / mean|d_obs|`` over the
first ``physics_nt`` time samples (the scheme is causal, so a shorter simulation is exact on them;
the always-zero last sample is excluded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi.physics.acquisition import DEFAULT, N_TIME, Acquisition, velocity_to_unit


def seismic_misfit(simulated: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Relative L1 misfit between seismic ``[B, S, T, R]`` tensors (dimensionless, 0 = identical)."""
    return (simulated - observed).abs().mean() / observed.abs().mean().clamp_min(1e-12)


class VelocityLoss(nn.Module):
    """``loss(pred, true, seismic, step) -> (total, parts)``.

    ``pred``/``true``: velocity ``[B, 1, 70, 70]`` m/s; ``seismic``: the raw observed data
    ``[B, 5, 1000, 70]`` (before normalization), needed only by the physics term; ``step``: optimizer
    step, for ``physics_every``. ``parts`` holds detached scalar tensors ``l1`` and ``physics`` (logging).
    """

    def __init__(self, physics_weight: float = 0.0, physics_fraction: float = 0.25, physics_every: int = 1,
                 physics_nt: int = N_TIME, acquisition: Acquisition = DEFAULT):
        super().__init__()
        self.physics_weight = physics_weight
        self.physics_fraction = physics_fraction
        self.physics_every = physics_every
        # A shortened survey keeps the stored data's convention (no zeroed sample) except at full length.
        self.acquisition = acquisition.with_(nt=physics_nt, zero_last_sample=physics_nt == N_TIME)

    @classmethod
    def from_config(cls, loss_cfg) -> VelocityLoss:
        return cls(loss_cfg.physics_weight, loss_cfg.physics_fraction, loss_cfg.physics_every, loss_cfg.physics_nt)

    def physics_due(self, step: int) -> bool:
        return self.physics_weight > 0 and step % self.physics_every == 0

    def physics(self, pred: torch.Tensor, seismic: torch.Tensor) -> torch.Tensor:
        """Misfit of the first ``physics_fraction`` of the batch, simulated in float32."""
        from fwi.physics.simulator import simulate

        n = max(1, round(self.physics_fraction * pred.shape[0]))
        nt = self.acquisition.nt
        usable = nt - 1 if nt == N_TIME else nt  # the stored last sample is always 0
        with torch.autocast(device_type=pred.device.type, enabled=False):
            simulated = simulate(pred[:n, 0].float(), self.acquisition, check_range=False)
            return seismic_misfit(simulated[:, :, :usable], seismic[:n, :, :usable].float())

    def forward(self, pred: torch.Tensor, true: torch.Tensor, seismic: torch.Tensor | None = None,
                step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        l1 = F.l1_loss(velocity_to_unit(pred.float()), velocity_to_unit(true.float()))
        parts = {"l1": l1.detach()}
        total = l1
        if seismic is not None and self.physics_due(step):
            physics = self.physics(pred, seismic)
            total = total + self.physics_weight * physics
            parts["physics"] = physics.detach()
        return total, parts
