"""Generating every weight of a wrapped model together and writing it into the layers around each forward.

Each target layer carries its generator as a child module named ``qpg``; the model carries two
hooks (module-level functions, so wrapped models deepcopy and pickle). QPG circuits of equal
shape are simulated in one batch across layers.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from ..quantum import CircuitSpec, sample_probabilities, simulate
from ..quantum.backends import check_training, probabilities
from .config import QPGConfig
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


def check_trainable(gens: dict[str, nn.Module]) -> None:
    """Raise `hqctf.quantum.backends.BackendError` when a generator's circuits can be measured but not trained as
    configured (builtin depolarising noise beyond its density-matrix size), before any training step."""
    for gen in gens.values():
        if isinstance(gen, QPGGenerator) and gen.uses_circuit and gen.config.measured:
            check_training(gen.spec, gen.config.backend, gen.config.depolarizing)


def _measure_key(config: QPGConfig) -> tuple:
    """The settings that decide how a generator's circuits are measured (equal keys share one batch)."""
    return (config.backward, config.max_block, config.engine, config.shots, config.backend, config.device,
            config.readout_error, config.depolarizing)


def _measure(angles: torch.Tensor, spec: CircuitSpec, config: QPGConfig, output: str) -> torch.Tensor:
    """What a batch of circuits measures under ``config``: the builtin simulator's exact or sampled path, or
    (another back-end, or noise) `hqctf.quantum.backends.probabilities`."""
    if config.measured:
        return probabilities(angles, spec, backend=config.backend, device=config.device, shots=config.shots,
                             readout=config.readout_error, depolarizing=config.depolarizing,
                             backward=config.backward, max_block=config.max_block, engine=config.engine)
    measured = simulate(angles, spec, backward=config.backward, max_block=config.max_block, engine=config.engine,
                        output=output)
    return sample_probabilities(measured, config.shots) if config.shots else measured


def generate(gens: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every generated weight, keyed by layer name; equal circuits (and measurement settings) are simulated in one
    batch."""
    weights: dict[str, torch.Tensor] = {}
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, gen in gens.items():
        if isinstance(gen, QPGGenerator) and gen.uses_circuit:
            groups[(gen.spec, _measure_key(gen.config), gen.circuit_output)].append(name)
        else:
            weights[name] = gen()
    for (spec, _, output), names in groups.items():
        members = [gens[n] for n in names]
        angles = torch.cat([g.angles for g in members]) if len(members) > 1 else members[0].angles
        measured = _measure(angles, spec, members[0].config, output)
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
