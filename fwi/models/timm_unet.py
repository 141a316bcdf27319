"""U-Net over any timm encoder: ``encoder`` names a timm model, used with ``features_only=True``.

Seismic ``[B, 5, 1000, 70]`` is resized (antialiased bilinear) to ``input_size`` and fed to the encoder
with ``in_chans=5``; a U-Net decoder climbs back through the encoder's feature maps to stride 2, is
resized to 70x70 and a 3x3 head gives velocity (m/s). Weights are never downloaded: ``pretrained``
is only used with a local ``encoder_weights`` file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi.errors import ConfigError
from fwi.models.registry import register_model, to_velocity
from fwi.models.timm_compat import import_timm
from fwi.physics.acquisition import N_SOURCES, NX, NZ


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the skip feature map, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cin + skip, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class TimmUNet(nn.Module):
    """timm encoder + U-Net decoder: ``[B, 5, 1000, 70]`` -> ``[B, 1, 70, 70]`` m/s."""

    def __init__(self, encoder: str, input_size: tuple[int, int], decoder_channels: tuple[int, ...],
                 encoder_weights: str | None = None):
        super().__init__()
        timm = import_timm()
        kwargs = {}
        if encoder_weights is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": str(encoder_weights)}
        try:
            self.encoder = timm.create_model(encoder, pretrained=encoder_weights is not None,
                                             features_only=True, in_chans=N_SOURCES, **kwargs)
        except RuntimeError as exc:
            raise ConfigError(f"model.encoder '{encoder}': {str(exc).splitlines()[0]}") from exc
        self.input_size = tuple(input_size)
        skips = self.encoder.feature_info.channels()  # shallow -> deep
        reductions = self.encoder.feature_info.reduction()
        # Decode from the deepest map up to the shallowest one at stride >= 2.
        levels = [i for i, r in enumerate(reductions) if r >= 2]
        chans = list(decoder_channels)[: len(levels) - 1]
        if len(chans) < len(levels) - 1:
            chans += [chans[-1] if chans else 32] * (len(levels) - 1 - len(chans))
        self.levels = levels
        blocks, cin = [], skips[levels[-1]]
        for level, cout in zip(reversed(levels[:-1]), chans, strict=True):
            blocks.append(DecoderBlock(cin, skips[level], cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(seismic, size=self.input_size, mode="bilinear", antialias=True,
                          align_corners=False)  # [B, 5, H, W]
        feats = self.encoder(x)  # list, shallow -> deep
        feats = [feats[i] for i in self.levels]
        y = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            y = block(y, skip)
        y = F.interpolate(y, size=(NZ, NX), mode="bilinear", align_corners=False)  # [B, C, 70, 70]
        return to_velocity(self.head(y))  # [B, 1, 70, 70] m/s


@register_model("timm_unet")
def build_timm_unet(cfg) -> TimmUNet:
    return TimmUNet(cfg.encoder, tuple(cfg.input_size), tuple(cfg.decoder_channels),
                    str(cfg.encoder_weights) if cfg.encoder_weights else None)
