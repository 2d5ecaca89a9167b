"""A convolution of a channel concatenation as a sum of convolutions, for inference networks.

MONAI's U-Nets concatenate skip features and upsampled features along channels and convolve the result; UNet++
re-concatenates every earlier node of a level for each new one. Channels-last concatenation copies every pixel's
channels, a large part of a 2D UNet++'s CPU inference (benchmarks/infer.py times the path without it). A
convolution is linear in its input channels: ``conv(cat([a, b]), W) = conv(a, W_a) + conv(b, W_b)`` with W split
along input channels, the same function without the copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus
from monai.networks.nets.basic_unet import UpCat
from torch import nn

LEVELS = 4  # MONAI's BasicUNet(PlusPlus): four down-sampling levels


class SplitUpCat(nn.Module):
    """MONAI's `UpCat` (upsample, pad to the skip's shape, concatenate, two convolutions) with the first convolution
    applied to each concatenated part and summed. ``x_e`` may be a list: the parts the caller would concatenate.

    Args:
        upcat: the block to take the modules of (shared, not copied).
    """

    def __init__(self, upcat: UpCat) -> None:
        super().__init__()
        self.upsample, self.is_pad = upcat.upsample, upcat.is_pad
        self.first, self.second = upcat.convs.conv_0, upcat.convs.conv_1

    def _pad(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """UpCat's padding: one replicated voxel at the end of each axis where a 2x pooling met an odd length."""
        sp = [0] * (2 * (up.dim() - 2))
        for i in range(up.dim() - 2):
            if skip.shape[-i - 1] != up.shape[-i - 1]:
                sp[2 * i + 1] = 1
        return F.pad(up, sp, "replicate") if any(sp) else up

    def forward(self, x: torch.Tensor, x_e: torch.Tensor | Sequence[torch.Tensor] | None) -> torch.Tensor:
        up = self.upsample(x)
        if x_e is None:
            return self.second(self.first(up))
        skips = [x_e] if isinstance(x_e, torch.Tensor) else list(x_e)
        if self.is_pad:
            up = self._pad(up, skips[0])
        parts = [*skips, up]
        conv = self.first.conv
        weights = conv.weight.split([p.shape[1] for p in parts], 1)  # views: the convolution lays them out
        y = conv._conv_forward(parts[0], weights[0], conv.bias)
        for part, weight in zip(parts[1:], weights[1:]):
            y += conv._conv_forward(part, weight, None)
        return self.second(self.first.adn(y))


class SplitUNetPlusPlus(nn.Module):
    """BasicUNetPlusPlus's graph with each node's skips passed as a list to a `SplitUpCat` (no concatenation).

    Args:
        net: the network to take the modules of (shared, not copied); its UpCats become SplitUpCats.
    """

    def __init__(self, net: BasicUNetPlusPlus) -> None:
        super().__init__()
        self.net, self.deep_supervision = net, net.deep_supervision
        for name, child in list(net.named_children()):
            if isinstance(child, UpCat):
                setattr(net, name, SplitUpCat(child))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        nodes = {(0, 0): net.conv_0_0(x)}
        for i in range(1, LEVELS + 1):  # MONAI's order: x_i_0, then x_(i-1)_1, ..., x_0_i
            nodes[i, 0] = getattr(net, f"conv_{i}_0")(nodes[i - 1, 0])
            for j in range(1, i + 1):
                k = i - j
                nodes[k, j] = getattr(net, f"upcat_{k}_{j}")(nodes[k + 1, j - 1], [nodes[k, m] for m in range(j)])
        heads = range(1, LEVELS + 1) if self.deep_supervision else (LEVELS,)
        return [getattr(net, f"final_conv_0_{j}")(nodes[0, j]) for j in heads]


def split_concatenations(net: nn.Module) -> nn.Module:
    """``net`` (modified in place) computing each concatenate-then-convolve block of a MONAI BasicUNet or
    BasicUNetPlusPlus as a sum of convolutions; other networks are returned unchanged. For inference: the result
    is the same function up to float rounding."""
    if isinstance(net, BasicUNetPlusPlus):
        return SplitUNetPlusPlus(net)
    if isinstance(net, BasicUNet):
        for name, child in list(net.named_children()):
            if isinstance(child, UpCat):
                setattr(net, name, SplitUpCat(child))
    return net
