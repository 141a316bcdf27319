"""InversionNet (Wu & Lin 2019; the OpenFWI baseline): a plain conv encoder-decoder.

The encoder squeezes the time axis with (k, 1) convolutions, then both axes down to a 1x1 code; the
decoder upsamples that code to 80x80 and crops to 70x70. ``width`` scales every layer (32 is the
published model, ~24.4 M parameters at width 32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fwi.models.registry import register_model, to_velocity
from fwi.physics.acquisition import N_RECEIVERS, N_SOURCES


def conv_block(cin: int, cout: int, kernel=(3, 3), stride=(1, 1), padding=(1, 1)) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def deconv_block(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2))


class InversionNet(nn.Module):
    """``[B, 5, 1000, 70]`` normalized seismic -> ``[B, 1, 70, 70]`` velocity (m/s)."""

    def __init__(self, width: int = 32):
        super().__init__()
        d1, d2, d3, d4, d5 = (width * m for m in (1, 2, 4, 8, 16))
        self.encoder = nn.Sequential(
            conv_block(N_SOURCES, d1, (7, 1), (2, 1), (3, 0)),  # 1000x70 -> 500x70
            conv_block(d1, d2, (3, 1), (2, 1), (1, 0)),  # -> 250x70
            conv_block(d2, d2, (3, 1), (1, 1), (1, 0)),
            conv_block(d2, d2, (3, 1), (2, 1), (1, 0)),  # -> 125x70
            conv_block(d2, d2, (3, 1), (1, 1), (1, 0)),
            conv_block(d2, d3, (3, 1), (2, 1), (1, 0)),  # -> 63x70
            conv_block(d3, d3, (3, 1), (1, 1), (1, 0)),
            conv_block(d3, d3, stride=(2, 2)),  # -> 32x35
            conv_block(d3, d3),
            conv_block(d3, d4, stride=(2, 2)),  # -> 16x18
            conv_block(d4, d4),
            conv_block(d4, d4, stride=(2, 2)),  # -> 8x9
            conv_block(d4, d4),
            conv_block(d4, d5, (8, math.ceil(N_RECEIVERS / 8)), padding=(0, 0)),  # -> 1x1
        )
        self.decoder = nn.Sequential(
            deconv_block(d5, d5, 5),  # -> 5x5
            conv_block(d5, d5),
            deconv_block(d5, d4, 4, 2, 1),  # -> 10x10
            conv_block(d4, d4),
            deconv_block(d4, d3, 4, 2, 1),  # -> 20x20
            conv_block(d3, d3),
            deconv_block(d3, d2, 4, 2, 1),  # -> 40x40
            conv_block(d2, d2),
            deconv_block(d2, d1, 4, 2, 1),  # -> 80x80
            conv_block(d1, d1),
        )
        self.head = nn.Conv2d(d1, 1, 3, padding=1)

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        x = self.encoder(seismic)  # [B, d5, 1, 1]
        x = self.decoder(x)  # [B, d1, 80, 80]
        x = F.pad(x, [-5, -5, -5, -5])  # crop -> [B, d1, 70, 70]
        return to_velocity(self.head(x))  # [B, 1, 70, 70] m/s


@register_model("inversionnet")
def build_inversionnet(cfg) -> InversionNet:
    return InversionNet(width=cfg.width)
