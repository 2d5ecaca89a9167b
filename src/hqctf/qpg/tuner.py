"""peft-style entry points: ``wrap`` a model's layers with generated weights, ``merge`` them back, report counts."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from .bank import GENERATOR, generate, generators, inject, release
from .config import LoRAConfig, LowRankConfig, QPGConfig, TargetConfig
from .generator import QPGGenerator
from .lowrank import LoRAGenerator, LowRankGenerator
from .targets import TargetError, find_targets, out_channel_dim

KEPT = "_hqctf_kept_classical"  # model attribute: targeted layers left classical -> their would-be generator size


def _generator(layer: nn.Module, config: TargetConfig) -> nn.Module:
    weight, out_dim = layer.weight.detach(), out_channel_dim(layer)
    if isinstance(config, QPGConfig):
        return QPGGenerator(tuple(weight.shape), out_dim, config, target_std=weight.std().item(), base=weight)
    if isinstance(config, LoRAConfig):
        return LoRAGenerator(weight, out_dim, config.r, config.alpha)
    if isinstance(config, LowRankConfig):
        return LowRankGenerator(weight, out_dim, config.r)
    raise TypeError(f"unknown config type {type(config).__name__}; use QPGConfig, LoRAConfig or LowRankConfig")


def wrap(model: nn.Module, config: TargetConfig) -> nn.Module:
    """Replace the weights of the layers ``config`` targets with generated ones, in place.

    Every module keeps its name, type and weight shape; each target layer gains a child ``qpg``
    holding its generator. Biases, normalisation layers and untargeted layers stay classical and
    trainable in every mode (for LoRA too, unlike peft's fine-tuning default: here networks are
    trained from scratch and the modes differ only in how target weights are parametrised).
    Generated weights are regenerated at every forward of ``model``. With QPG, a targeted layer whose
    generator would not be ``min_compression`` times smaller than the layer stays classical (listed by
    `trainable_report`).

    Returns:
        ``model`` itself.
    """
    if generators(model):
        raise TargetError("model already has generated weights; merge it before wrapping again")
    targets = find_targets(model, config)
    kept = {}
    if isinstance(config, QPGConfig) and config.min_compression > 0:
        for name, layer in targets:
            count = QPGGenerator.trainable_count(tuple(layer.weight.shape), out_channel_dim(layer), config)
            if count * config.min_compression >= layer.weight.numel():
                kept[name] = count
        targets = [(name, layer) for name, layer in targets if name not in kept]
        if not targets:
            raise TargetError(f"every targeted layer's generator would be at least 1/{config.min_compression:g} of "
                              "its weights; nothing to generate (lower min_compression or target larger layers)")
    model.__dict__[KEPT] = kept
    for _, layer in targets:
        gen = _generator(layer, config).to(device=layer.weight.device, dtype=layer.weight.dtype)
        del layer._parameters["weight"]
        layer.add_module(GENERATOR, gen)
    model.register_forward_pre_hook(inject)
    model.register_forward_hook(release)
    with torch.no_grad():
        inject(model)
    return model


def merge(model: nn.Module, inplace: bool = False, measured: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A plain model (same class, no hqctf parts or hooks) with the generated weights written in.

    Its state_dict loads into a freshly built, unwrapped model of the same architecture.

    Args:
        measured: per QPG circuit layer, its circuits' probabilities (C_out, 2^n) to generate the weights from
            instead of simulating them (e.g. estimated from hardware counts).
    """
    if not generators(model):
        raise TargetError("model has no generated weights to merge")
    if not inplace:
        model = copy.deepcopy(model)
    gens = generators(model)
    measured = dict(measured or {})
    for name, probs in measured.items():
        gen = gens.get(name)
        if not isinstance(gen, QPGGenerator) or not gen.uses_circuit or gen.circuit_output != "probs":
            raise TargetError(f"measured probabilities for {name!r}, which is not a QPG layer of measured circuits")
        if tuple(probs.shape) != (gen.rows, 1 << gen.spec.n_qubits):
            raise TargetError(f"{name}: measured probabilities of shape {tuple(probs.shape)}, expected "
                              f"({gen.rows}, {1 << gen.spec.n_qubits})")
    with torch.no_grad():
        weights = generate({name: gen for name, gen in gens.items() if name not in measured})
        for name, probs in measured.items():
            weights[name] = gens[name].weight(probs.to(gens[name].angles))
    for name, weight in weights.items():
        layer = model.get_submodule(name)
        del layer.weight
        delattr(layer, GENERATOR)
        layer.weight = nn.Parameter(weight.detach().clone(memory_format=torch.contiguous_format))  # as a fresh layer's
    model.__dict__.pop("_hqctf_generated", None)
    model.__dict__.pop(KEPT, None)
    for hooks in (model._forward_pre_hooks, model._forward_hooks):
        for key, hook in list(hooks.items()):
            if hook in (inject, release):
                del hooks[key]
    return model


def _layer_counts(model: nn.Module) -> list[tuple[str, str, str, int, int]]:
    gens = generators(model)
    inside = tuple(f"{name}.{GENERATOR}".lstrip(".") for name in gens)
    rows = []
    for name, layer in model.named_modules():
        if inside and (name.startswith(inside)):
            continue
        own = [p for _, p in layer.named_parameters(recurse=False)]
        total = sum(p.numel() for p in own)
        trainable = sum(p.numel() for p in own if p.requires_grad)
        if name in gens:
            kind = type(gens[name]).__name__.removesuffix("Generator").lower()
            total += layer.weight.numel()
            trainable += sum(p.numel() for p in gens[name].parameters() if p.requires_grad)
        elif own:
            kind = "classical"
        else:
            continue
        rows.append((name or "(root)", type(layer).__name__, kind, trainable, total))
    return rows


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, where total counts the network as merged (generated weights included)."""
    rows = _layer_counts(model)
    return sum(r[3] for r in rows), sum(r[4] for r in rows)


def trainable_report(model: nn.Module) -> str:
    """A per-layer table of trainable and total parameter counts, with a summary line."""
    rows = _layer_counts(model)
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'type':<16} {'weights':<10} {'trainable':>10} {'total':>10}"]
    lines += [f"{n:<{width}}  {t:<16} {k:<10} {tr:>10,} {to:>10,}" for n, t, k, tr, to in rows]
    kept = model.__dict__.get(KEPT, {})
    for name, count in kept.items():
        lines.append(f"{name}: kept classical: its generator would have {count:,} trainable parameters for "
                     f"{model.get_submodule(name).weight.numel():,} weights")
    trainable, total = count_parameters(model)
    lines.append(f"trainable {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)")
    return "\n".join(lines)
