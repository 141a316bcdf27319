"""Input layouts: how seismic ``[B, 5, 1000, 70]`` meets a timm encoder so its first feature map is 72x72.

The decoder ends at the encoder's first (shallowest) feature map and the model crops 1 px per side to the
70x70 velocity grid, so every layout aims that map at exactly :data:`GRID` x :data:`GRID`:

* ``restride`` (the CAFormer notebook, LB 28.8): the 5 shots as channels; time reflection-padded to
  16 * 72 = 1152 samples; the stem's strided ops keep their stride in time but get stride 1 across the
  receivers (zero-padded so the width becomes 72), and an average pool in time right after the last of them
  brings the time axis down to 72. All 70 receivers reach the encoder unresampled.
* ``shots_square`` (1st place): the 5 shots side by side as one 1-channel 1000x350 image, resized to a square
  of side 72 x (the encoder's first reduction).
* ``resize``: the 5 shots as channels, resized to that square (the plain option; it resamples the receivers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from fwi.errors import ConfigError
from fwi.physics.acquisition import N_RECEIVERS, N_SOURCES, N_TIME

GRID = 72
"""Side of the first feature map and of the decoder output: the 70x70 grid plus 1 px per side."""
TIME_PADDED = 16 * GRID
"""restride: time samples after reflection padding (1152 = 72 x the 16x time reduction to the first map)."""


def _strided_stem(encoder: nn.Module, reduction: int) -> list[tuple[str, nn.Module]]:
    """The strided convolutions and pools that run before the first feature map, in order (``named_modules``
    order, which timm encoders register in execution order), their strides multiplying to ``reduction``."""
    ops, total = [], 1
    for name, module in encoder.named_modules():
        if total == reduction:
            break
        if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            stride = _pair(module.stride)
            if stride == (1, 1):
                continue
            if stride[0] != stride[1] or total * stride[0] > reduction:
                break
            ops.append((name, module))
            total *= stride[0]
    if total != reduction or not ops:
        raise ConfigError(f"model.layout=restride: cannot find the strided stem of this encoder (first feature map "
                          f"at reduction {reduction}); use model.layout=shots_square")
    return ops


def _is_same_padded(module: nn.Module) -> bool:
    """timm's TF-style ops (Conv2dSame, MaxPool2dSame, ...) pad dynamically from their stride: width is preserved."""
    return type(module).__name__.endswith("Same")


class Restride(nn.Module):
    """Reflection-pads time to 1152 and zero-pads the receivers for an encoder patched in place (see module doc)."""

    in_chans = N_SOURCES

    def __init__(self, encoder: nn.Module, reduction: int):
        super().__init__()
        if reduction < 2 or 16 % reduction:
            raise ConfigError(f"model.layout=restride needs an encoder whose first feature map is at reduction 2, "
                              f"4, 8 or 16 (this one: {reduction}); use model.layout=shots_square")
        ops = _strided_stem(encoder, reduction)
        extra = 0  # receivers each patched op removes (a 4x4 patchify conv without padding: 3)
        for _, op in ops:
            kernel, pad = _pair(op.kernel_size), _pair(op.padding)
            op.stride = (_pair(op.stride)[0], 1)
            if not _is_same_padded(op):
                extra += kernel[1] - 1 - 2 * pad[1]
        width_pad = GRID - N_RECEIVERS + extra
        if width_pad < 0:
            raise ConfigError("model.layout=restride: this encoder's stem pads the receivers beyond 72; "
                              "use model.layout=shots_square")
        # Average the stem's 16/reduction finer time steps into one: time 1152/reduction -> 72.
        name, last = ops[-1]
        parent_name, _, attr = name.rpartition(".")
        parent = encoder.get_submodule(parent_name) if parent_name else encoder
        setattr(parent, attr, nn.Sequential(last, nn.AvgPool2d((16 // reduction, 1))))
        time_pad = TIME_PADDED - N_TIME
        self.time_pad = (time_pad // 2, time_pad - time_pad // 2)
        self.width_pad = (width_pad // 2, width_pad - width_pad // 2)

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        x = F.pad(seismic, (0, 0, *self.time_pad), mode="reflect")  # [B, 5, 1152, 70]
        return F.pad(x, self.width_pad)  # [B, 5, 1152, 70 + width_pad], zeros beyond the edge receivers


class ShotsSquare(nn.Module):
    """The 5 shots side by side ``[B, 1, 1000, 350]``, resized (antialiased bilinear) to a square."""

    in_chans = 1

    def __init__(self, encoder: nn.Module, reduction: int):
        super().__init__()
        self.size = GRID * reduction

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        b, s, t, r = seismic.shape
        x = seismic.permute(0, 2, 1, 3).reshape(b, 1, t, s * r)  # shot-major along x: [B, 1, 1000, 350]
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)


class Resize(nn.Module):
    """The 5 shots as channels, resized (antialiased bilinear) to a square ``[B, 5, S, S]``."""

    in_chans = N_SOURCES

    def __init__(self, encoder: nn.Module, reduction: int):
        super().__init__()
        self.size = GRID * reduction

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        return F.interpolate(seismic, size=(self.size, self.size), mode="bilinear", antialias=True,
                             align_corners=False)


LAYOUTS: dict[str, type[nn.Module]] = {"restride": Restride, "shots_square": ShotsSquare, "resize": Resize}
"""Layout classes by ``model.layout`` name; each is built as ``Layout(encoder, first_reduction)`` (restride
patches the encoder there) and has ``in_chans``, the encoder's input channels."""
