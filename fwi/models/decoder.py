"""U-Net decoder over an encoder's feature pyramid (the CAFormer-notebook design).

Each stage upsamples the deeper map by pixel shuffle, refines the skip map with two convolutions,
concatenates both, and applies SCSE attention around two 3x3 convolutions. No normalization layers, as in
the public notebook that scored 28.8 MAE. The output is at the shallowest feature map's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi.errors import ConfigError


def conv_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 convolution (no bias) + ReLU, size-preserving."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.ReLU(inplace=True))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al. 2018): ``x * cSE(x) + x * sSE(x)``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.Tanh(),
                                     nn.Conv2d(hidden, channels, 1), nn.Sigmoid())
        self.spatial = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel(x) + x * self.spatial(x)


class PixelShuffleUp(nn.Sequential):
    """Learned x``scale`` upsampling ``[B, C, H, W] -> [B, C, scale*H, scale*W]``.

    A 3x3 convolution to ``C * scale^2`` channels and a pixel shuffle, then a ``scale``-wide average
    (replicate-padded, stride 1) against checkerboard artefacts. ICNR initialization (every sub-pixel starts
    with the same kernel and bias) makes it begin as nearest-neighbour upsampling of a convolution.
    """

    def __init__(self, channels: int, scale: int = 2):
        conv = nn.Conv2d(channels, channels * scale**2, 3, padding=1)
        with torch.no_grad():
            kernel = nn.init.kaiming_normal_(torch.empty(channels, channels, 3, 3))
            conv.weight.copy_(kernel.repeat_interleave(scale**2, dim=0))
            conv.bias.copy_(conv.bias[:: scale**2].repeat_interleave(scale**2))
        super().__init__(conv, nn.PixelShuffle(scale), nn.ReplicationPad2d((scale - 1, 0, scale - 1, 0)),
                         nn.AvgPool2d(scale, stride=1))


class DecoderBlock(nn.Module):
    """One decoder stage: upsample ``x`` to the skip map's size, fuse with the refined skip, two convs."""

    def __init__(self, cin: int, skip: int, cout: int, scale: int):
        super().__init__()
        self.up = PixelShuffleUp(cin, scale) if scale > 1 else nn.Identity()
        self.skip_convs = nn.Sequential(conv_relu(skip, skip), conv_relu(skip, skip))
        self.attention_in = SCSE(cin + skip)
        self.convs = nn.Sequential(conv_relu(cin + skip, cout), conv_relu(cout, cout))
        self.attention_out = SCSE(cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # An odd map (9x9) downsamples to a rounded-up (5x5, padded convs) or rounded-down (4x4, patchify) one:
        # crop the upsampled map (10x10) to the skip's size, or extend its last row/column (8x8).
        h, w = skip.shape[-2:]
        x = self.up(x)[..., :h, :w]
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), mode="replicate")
        x = self.attention_in(torch.cat([x, self.skip_convs(skip)], dim=1))
        return self.attention_out(self.convs(x))


class UNetDecoder(nn.Module):
    """Feature maps shallow -> deep (``channels``, ``reductions`` per level) -> ``[B, out_channels, H0, W0]``.

    ``decoder_channels`` lists stage widths deep to shallow; the last ``levels - 1`` are used, so one list serves
    encoders with 4 levels (caformer, convnext) and 5 (resnet).
    """

    def __init__(self, channels: list[int], reductions: list[int], decoder_channels: list[int]):
        super().__init__()
        n = len(channels) - 1
        if len(decoder_channels) < n:
            raise ConfigError(f"model.decoder_channels has {len(decoder_channels)} entries; this encoder has "
                              f"{n + 1} feature levels, so the decoder needs {n} (deep to shallow)")
        widths = list(decoder_channels)[len(decoder_channels) - n:]
        blocks, cin = [], channels[-1]
        for level, cout in zip(reversed(range(n)), widths, strict=True):
            blocks.append(DecoderBlock(cin, channels[level], cout, reductions[level + 1] // reductions[level]))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cin

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            y = block(y, skip)
        return y
