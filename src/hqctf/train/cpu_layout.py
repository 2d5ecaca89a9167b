"""A plain network laid out for CPU inference: the same logits, computed faster (docs/benchmarks.md, Inference)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .norm_act import fuse_norm_act
from .split_concat import split_concatenations


class _ChannelsLast(nn.Module):
    """``net`` fed channels-last inputs (its weights are channels-last too, so every layer keeps that layout)."""

    def __init__(self, net: nn.Module, layout: torch.memory_format) -> None:
        super().__init__()
        self.net, self.layout = net, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.net(x.contiguous(memory_format=self.layout))


def _as_group_norms(net: nn.Module) -> None:
    """Replace every instance norm (no running statistics) by the same function as a group norm of one channel
    per group, which, unlike torch's instance norm, keeps a channels-last layout."""
    for name, child in net.named_children():
        if isinstance(child, nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats:
            norm = nn.GroupNorm(child.num_features, child.num_features, child.eps, child.affine)
            if child.affine:
                norm.load_state_dict(child.state_dict())
            setattr(net, name, norm)
        else:
            _as_group_norms(child)


def cpu_inference_network(net: nn.Module, spatial_dims: int) -> nn.Module:
    """A copy of a plain network (no generators) that computes the same logits faster on a CPU: each instance
    norm and the activation after it as one compiled kernel (`fuse_norm_act`), other instance norms as
    per-channel group norms, each convolution of a concatenation as a sum of convolutions
    (`split_concatenations`), and the whole network channels-last (oneDNN's fast convolutions for few
    channels). In eval mode, for inference only."""
    fast = fuse_norm_act(copy.deepcopy(net).cpu().eval())
    _as_group_norms(fast)
    layout = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    return _ChannelsLast(split_concatenations(fast.to(memory_format=layout)), layout).eval()
