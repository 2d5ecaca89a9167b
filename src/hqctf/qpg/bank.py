"""Generating every weight of a wrapped model together and writing it into the layers around each forward.

Each target layer carries its generator as a child module named ``qpg``; the model carries two
hooks (module-level functions, so wrapped models deepcopy and pickle). QPG circuits of equal
shape are simulated in one batch across layers.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from ..quantum import sample_probabilities, simulate
from .generator import QPGGenerator
from .lowrank import LoRAGenerator, LowRankGenerator

GENERATOR = "qpg"  # child name of a target layer's generator; every generator parameter name contains it
GENERATORS = (QPGGenerator, LoRAGenerator, LowRankGenerator)


def generators(model: nn.Module) -> dict[str, nn.Module]:
    """Target layer name -> its generator, in model order."""
    found = {}
    for name, layer in model.named_modules():
        gen = layer._modules.get(GENERATOR)
        if isinstance(gen, GENERATORS):
            found[name] = gen
    return found


def generate(gens: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every generated weight, keyed by layer name; equal circuits are simulated in one batch."""
    weights: dict[str, torch.Tensor] = {}
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, gen in gens.items():
        if isinstance(gen, QPGGenerator) and gen.uses_circuit:
            c = gen.config
            groups[(gen.spec, c.backward, c.max_block, c.engine, c.shots, gen.circuit_output)].append(name)
        else:
            weights[name] = gen()
    for (spec, backward, max_block, engine, shots, output), names in groups.items():
        members = [gens[n] for n in names]
        angles = torch.cat([g.angles for g in members]) if len(members) > 1 else members[0].angles
        measured = simulate(angles, spec, backward=backward, max_block=max_block, engine=engine, output=output)
        if shots:
            measured = sample_probabilities(measured, shots)
        for name, gen, m in zip(names, members, measured.split([g.rows for g in members])):
            weights[name] = gen.weight(m)
    return {name: weights[name] for name in gens}


def _state_key(gens: dict[str, nn.Module]) -> tuple:
    """Identity and in-place version of every generator tensor: changes whenever a weight could."""
    return tuple((id(t), t._version) for g in gens.values() for t in (*g.parameters(), *g.buffers()))


def inject(model: nn.Module, *_args) -> None:
    """Forward pre-hook: write freshly generated weights into the target layers.

    Without autograd (evaluation, sliding-window inference) the weights are only regenerated when a
    generator tensor has changed since the last forward.
    """
    gens = generators(model)
    key = _state_key(gens)
    if not torch.is_grad_enabled() and model.__dict__.get("_hqctf_generated") == key:
        return
    for name, weight in generate(gens).items():
        model.get_submodule(name).weight = weight
    model.__dict__["_hqctf_generated"] = key


def release(model: nn.Module, *_args) -> None:
    """Forward hook: keep only detached weights in the layers, so no autograd graph outlives the forward."""
    for name in generators(model):
        layer = model.get_submodule(name)
        layer.weight = layer.weight.detach()
