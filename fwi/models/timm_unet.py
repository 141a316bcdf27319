"""U-Net over any timm encoder at full resolution: ``[B, 5, 1000, 70]`` -> ``[B, 1, 70, 70]`` m/s.

An input layout (fwi/models/layouts.py, ``model.layout``) makes the encoder's first feature map 72x72; the
decoder (fwi/models/decoder.py) climbs back to it, a 3x3 head gives one channel, and 1 px is cropped per side:
the velocity grid is reached natively, never stretched from a coarser map.

Pretrained encoders: ``model.pretrained=true`` asks timm for its weights (downloaded by timm when online) or,
with ``model.encoder_weights=FILE``, reads them from a local file; input channels are adapted as timm does.
A checkpoint holds the whole network, so restoring it never needs the pretrained source
(``build_model(cfg, pretrained=False)``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fwi.errors import ConfigError, FwiError
from fwi.models.decoder import UNetDecoder
from fwi.models.layouts import GRID, LAYOUTS
from fwi.models.registry import register_model, to_velocity
from fwi.models.timm_compat import import_timm


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def create_encoder(name: str, in_chans: int, *, pretrained: bool = False,
                   weights: str | Path | None = None) -> nn.Module:
    """timm ``name`` with ``features_only=True`` and ``in_chans`` inputs, random or pretrained (timm's download or
    the local ``weights`` file); every failure is a one-line :class:`ConfigError` saying what to do."""
    timm = import_timm()
    kwargs = {}
    if weights is not None:
        if not Path(weights).is_file():
            raise ConfigError(f"model.encoder_weights: file not found: {weights}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}  # timm's own local-file route
    try:
        return timm.create_model(name, pretrained=pretrained, features_only=True, in_chans=in_chans, **kwargs)
    except Exception as exc:  # timm and huggingface_hub raise RuntimeError, OSError, HTTP and hub errors
        reason = _first_line(exc)
        if not pretrained or "Unknown model" in reason:
            raise ConfigError(f"model.encoder '{name}': {reason}") from exc
        if weights is not None:
            raise ConfigError(f"model.encoder_weights {weights}: cannot load it into '{name}': {reason}") from exc
        raise ConfigError(
            f"model.pretrained=true: timm could not get the pretrained weights of '{name}' ({reason}). Offline, "
            f"save them where you are online with python -c \"import timm, torch; torch.save(timm.create_model("
            f"'{name}', pretrained=True).state_dict(), '{name}.pth')\" and pass model.encoder_weights={name}.pth"
        ) from exc


class TimmUNet(nn.Module):
    """timm encoder + U-Net decoder: ``[B, 5, 1000, 70]`` normalized seismic -> ``[B, 1, 70, 70]`` m/s."""

    def __init__(self, encoder: str, layout: str = "restride", decoder_channels: tuple[int, ...] = (256, 128, 64, 32),
                 *, pretrained: bool = False, encoder_weights: str | Path | None = None):
        super().__init__()
        layout_cls = LAYOUTS[layout]
        self.encoder = create_encoder(encoder, layout_cls.in_chans, pretrained=pretrained, weights=encoder_weights)
        reductions = self.encoder.feature_info.reduction()
        self.layout = layout_cls(self.encoder, reductions[0])  # restride patches the encoder's stem here
        self.decoder = UNetDecoder(self.encoder.feature_info.channels(), reductions, list(decoder_channels))
        self.head = nn.Conv2d(self.decoder.out_channels, 1, 3, padding=1)
        self.names = (encoder, layout)

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(self.layout(seismic))  # list shallow -> deep; feats[0]: [B, C0, 72, 72]
        if tuple(feats[0].shape[-2:]) != (GRID, GRID):
            raise FwiError(f"model.encoder '{self.names[0]}' with model.layout={self.names[1]} gives a first feature "
                           f"map of {tuple(feats[0].shape[-2:])}, not ({GRID}, {GRID}); try another layout")
        y = self.decoder(feats)  # [B, C, 72, 72]
        y = self.head(y)[..., 1:-1, 1:-1]  # crop 1 px per side -> [B, 1, 70, 70]
        return to_velocity(y)  # m/s


@register_model("timm_unet")
def build_timm_unet(cfg) -> TimmUNet:
    return TimmUNet(cfg.encoder, cfg.layout, tuple(cfg.decoder_channels), pretrained=cfg.pretrained,
                    encoder_weights=cfg.encoder_weights)
