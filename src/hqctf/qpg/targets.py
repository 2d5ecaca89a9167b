"""Selecting target layers by name and type, and viewing their weights as (channels, weights per channel)."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from .config import TargetConfig

SUPPORTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
# layers with weights that stay classical even when a pattern matches them
CLASSICAL = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.PReLU, nn.Embedding)


class TargetError(ValueError):
    """A target selection that cannot be honoured."""


def out_channel_dim(layer: nn.Module) -> int:
    """Dimension of the weight that indexes output channels (1 for transposed convolutions)."""
    return 1 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 0


def weight_rows(shape: tuple[int, ...], out_dim: int) -> tuple[int, int]:
    """(output channels, weights per channel) of a weight shape."""
    rows = shape[out_dim]
    return rows, math.prod(shape) // rows


def as_matrix(weight: torch.Tensor, out_dim: int) -> torch.Tensor:
    """View a weight as (output channels, weights per channel)."""
    return weight.transpose(0, out_dim).reshape(weight.shape[out_dim], -1)


def from_matrix(matrix: torch.Tensor, shape: tuple[int, ...], out_dim: int) -> torch.Tensor:
    """Inverse of :func:`as_matrix`: a (channels, weights per channel) matrix back to ``shape``."""
    swapped = list(shape)
    swapped[0], swapped[out_dim] = swapped[out_dim], swapped[0]
    return matrix.reshape(swapped).transpose(0, out_dim)


def find_targets(model: nn.Module, config: TargetConfig) -> list[tuple[str, nn.Module]]:
    """The (name, layer) pairs ``config`` selects, in model order.

    Raises:
        TargetError: a matched layer has a weight of an unsupported type, or nothing matched
            (the message lists the model's layer names).
    """
    include = [re.compile(p) for p in config.target_modules]
    exclude = [re.compile(p) for p in config.exclude_modules]
    targets = []
    for name, layer in model.named_modules():
        if not name or not any(p.fullmatch(name) for p in include) or any(p.fullmatch(name) for p in exclude):
            continue
        if isinstance(layer, SUPPORTED):
            targets.append((name, layer))
        elif isinstance(layer.__dict__.get("_parameters", {}).get("weight"), nn.Parameter) and not isinstance(
            layer, CLASSICAL
        ):
            supported = ", ".join(t.__name__ for t in SUPPORTED)
            raise TargetError(f"layer {name!r} of type {type(layer).__name__} cannot be generated; supported: {supported}")
    if not targets:
        names = [n for n, m in model.named_modules() if isinstance(m, SUPPORTED)]
        raise TargetError(
            f"target_modules {list(config.target_modules)} (excluding {list(config.exclude_modules)}) "
            f"matched no supported layer; layer names are: {', '.join(names) or '(none)'}"
        )
    return targets
