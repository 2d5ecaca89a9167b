"""Instance norm + leaky ReLU as one compiled CPU kernel (``norm_act.cpp``), for inference networks.

Built and loaded through :mod:`hqctf.compiled`; samples are split over the torch threads. Without a compiler,
for tensors that are not channels-last, not float, not on the CPU or that need gradients, the torch ops run.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import compiled

SOURCE = Path(__file__).with_name("norm_act.cpp")
MIN_PARALLEL_WORK = 1 << 15  # elements below which one thread is faster
_P, _I64, _I32, _F64 = compiled.POINTER, compiled.INT64, compiled.INT32, ctypes.c_double
SIGNATURES = (("hq_norm_act", (_P, _P, _P, _I64, _I64, _I64, _F64, _F64, _P, _I32)),)
LAYOUTS = {4: torch.channels_last, 5: torch.channels_last_3d}


def library() -> ctypes.CDLL:
    """The loaded kernel library (compiled on first use); raises NativeUnavailable with the reason."""
    return compiled.load(SOURCE, SIGNATURES)


class NormAct(nn.Module):
    """An instance norm (per sample and channel, affine) followed by a leaky ReLU, in one pass where it can.

    Args:
        channels: channels C of the (N, C, *spatial) input.
        weight, bias: the norm's affine parameters (C,), or None.
        eps: the norm's epsilon.
        slope: the activation's negative slope (0: ReLU).
    """

    def __init__(self, channels: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                 slope: float) -> None:
        super().__init__()
        self.channels, self.eps, self.slope = channels, eps, slope
        self.weight = None if weight is None else nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def _fits(self, x: torch.Tensor) -> bool:
        layout = LAYOUTS.get(x.dim())
        return (layout is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and x.shape[1] == self.channels and x.is_contiguous(memory_format=layout)
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight is not None and self.weight.requires_grad)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not compiled.use_native("auto", self._fits(x), library, ""):
            return F.leaky_relu(F.group_norm(x, self.channels, self.weight, self.bias, self.eps), self.slope)
        y = torch.empty_like(x)  # same strides: channels-last
        params = [None if p is None else p.to(x.dtype).contiguous() for p in (self.weight, self.bias)]
        positions = x[0, 0].numel()
        fn = getattr(library(), f"hq_norm_act_{compiled.suffix(x.dtype)}")
        compiled.call(fn, x.data_ptr(), *map(compiled.pointer, params), x.shape[0], positions, self.channels,
                      self.eps, self.slope, y.data_ptr(), min(x.shape[0], compiled.threads(x.numel(), MIN_PARALLEL_WORK)))
        return y


def _norm_of(module: nn.Module) -> tuple[int, torch.Tensor | None, torch.Tensor | None, float] | None:
    """(channels, weight, bias, eps) of a per-channel, per-sample norm without running statistics, else None."""
    if isinstance(module, nn.modules.instancenorm._InstanceNorm) and not module.track_running_stats:
        return module.num_features, module.weight, module.bias, module.eps
    if isinstance(module, nn.GroupNorm) and module.num_groups == module.num_channels:
        return module.num_channels, module.weight, module.bias, module.eps
    return None


def _slope_of(module: nn.Module) -> float | None:
    if isinstance(module, nn.LeakyReLU):
        return module.negative_slope
    return 0.0 if isinstance(module, nn.ReLU) else None


def fuse_norm_act(net: nn.Module) -> nn.Module:
    """Replace, in place, every instance norm that a sequential container follows by a leaky ReLU or ReLU
    (dropout in between allowed: MONAI's ADN) with a `NormAct`, the activation with an identity. Dropout
    commutes with the activation (a non-negative factor), so the result is the same function. Returns ``net``."""
    for child in net.modules():
        if not isinstance(child, nn.Sequential):
            continue
        names = list(child._modules)
        for i, name in enumerate(names):
            norm = _norm_of(child._modules[name])
            rest = [n for n in names[i + 1:] if not isinstance(child._modules[n], nn.Dropout)]
            if norm is None or not rest or _slope_of(child._modules[rest[0]]) is None:
                continue
            slope = _slope_of(child._modules[rest[0]])
            child._modules[name] = NormAct(*norm, slope)
            child._modules[rest[0]] = nn.Identity()
    return net
