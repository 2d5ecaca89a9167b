"""Networks and training modes: MONAI BasicUNet / BasicUNetPlusPlus, then classical, QPG, LoRA, low-rank or light."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus
from torch import nn

from ..qpg import TargetConfig, count_parameters, wrap
from ..quantum.backends import BackendError
from .config import ConfigError, ModeConfig, ModelConfig


def build_network(config: ModelConfig, out_channels: int, features: Sequence[int] | None = None) -> nn.Module:
    """A plain MONAI network with one input channel (CT) and ``out_channels`` logits (background + structures)."""
    feats = tuple(features or config.features)
    if config.name == "unet":
        return BasicUNet(spatial_dims=config.spatial_dims, in_channels=1, out_channels=out_channels, features=feats,
                         dropout=config.dropout)
    net = BasicUNetPlusPlus(spatial_dims=config.spatial_dims, in_channels=1, out_channels=out_channels,
                            features=feats, dropout=config.dropout)
    for name in ("final_conv_0_1", "final_conv_0_2", "final_conv_0_3"):
        setattr(net, name, nn.Identity())  # deep-supervision heads: unused without deep supervision, never trained
    return net


def logits_of(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The full-resolution logits: BasicUNetPlusPlus returns a list of heads, the last is the final one."""
    return output[-1] if isinstance(output, (list, tuple)) else output


def _trainable(model: nn.Module) -> int:
    return count_parameters(model)[0]


def light_features(config: ModelConfig, out_channels: int, target: int) -> tuple[int, ...]:
    """Channel widths (the configured ones scaled by one factor) whose classical trainable count is closest to ``target``."""

    def scaled(factor: float) -> tuple[int, ...]:
        return tuple(max(2, round(f * factor)) for f in config.features)

    lo, hi = 0.01, 1.0
    for _ in range(30):  # trainable count grows monotonically with the factor (about quadratically)
        mid = (lo + hi) / 2
        if _trainable(build_network(config, out_channels, scaled(mid))) < target:
            lo = mid
        else:
            hi = mid
    candidates = {scaled(lo), scaled(hi)}
    return min(candidates, key=lambda f: abs(_trainable(build_network(config, out_channels, f)) - target))


def network_features(model: ModelConfig, mode: ModeConfig, out_channels: int) -> tuple[int, ...]:
    """Channel widths of the network a mode trains: the configured ones, or scaled down for ``light``."""
    if mode.name != "light":
        return tuple(model.features)
    if mode.light_width is not None:
        return tuple(max(2, round(f * mode.light_width)) for f in model.features)
    target = _trainable(wrap(build_network(model, out_channels), mode.qpg))
    return light_features(model, out_channels, target)


def generator_config(mode: ModeConfig) -> TargetConfig | None:
    """The generator settings a mode wraps its network with (None for classical and light).

    ``hyper``, ``hyperprob``, ``frozen`` and ``residual`` are ``mode.qpg`` with a learned embedding in place of
    the circuits, with the softmax of that embedding's projection (classical probabilities), with untrained
    circuits, and on top of a frozen random W0.
    """
    controls = {"hyper": {"inputs": "embedding"}, "hyperprob": {"inputs": "softmax"}, "frozen": {"inputs": "frozen"},
                "residual": {"residual": True}}
    if mode.name in controls:
        return dataclasses.replace(mode.qpg, **controls[mode.name])
    return {"qpg": mode.qpg, "lora": mode.lora, "lowrank": mode.lowrank}.get(mode.name)


def build_model(model: ModelConfig, mode: ModeConfig, out_channels: int) -> nn.Module:
    """The network for a training mode.

    ``classical`` trains every weight; ``qpg``, its controls (``hyper``, ``frozen``, ``residual``), ``lora`` and
    ``lowrank`` wrap the targeted layers with weight generators (see `hqctf.qpg.wrap`); ``light`` is the same
    architecture with channel widths scaled down to the QPG trainable count (or by ``mode.light_width``).
    """
    network = build_network(model, out_channels, network_features(model, mode, out_channels))
    config = generator_config(mode)
    if config is None:
        return network
    try:
        return wrap(network, config)  # wrapping generates the weights once: a back-end's errors surface here
    except BackendError as exc:
        raise ConfigError(f"mode.qpg: {exc}") from None


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, group_lr: dict[str, float]) -> list[dict]:
    """AdamW parameter groups by `hqctf.qpg.diagnostics.parameter_group`: ``group_lr`` overrides ``lr`` per group;
    QPG's parts get no weight decay (it would pull angles towards 0 and shrink gains)."""
    from ..qpg.diagnostics import parameter_group

    found: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            found.setdefault(parameter_group(name), []).append(p)
    return [{"params": params, "name": group, "lr": group_lr.get(group, lr),
             "weight_decay": weight_decay if group in ("classical", "generator") else 0.0} for group, params in found.items()]
