"""Why a generator learns or not: input signal, gradient and update sizes, rank, and representation ceiling.

Every function takes a model (wrapped or plain) or a weight and knows nothing of data or training loops;
`benchmarks/qpg_diagnose.py` drives them through training runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .bank import GENERATOR, generate, generators
from .config import QPGConfig
from .generator import QPGGenerator
from .rank import effective_rank
from .targets import SUPPORTED, as_matrix, out_channel_dim

GROUPS = ("angles", "embedding", "mapping", "gain", "generator", "classical")


def parameter_group(name: str) -> str:
    """The group of a parameter name: ``angles``, ``embedding``, ``mapping``, ``gain`` (QPG parts), ``generator``
    (LoRA / low-rank factors) or ``classical`` (everything not generated: biases, norms, untargeted layers)."""
    parts = name.split(".")
    if GENERATOR not in parts:
        return "classical"
    leaf = parts[-1]
    if leaf in ("angles", "embedding"):
        return leaf
    if leaf == "log_gain":
        return "gain"
    if leaf == "common_row":  # shared by the layer's channels, like the mapping
        return "mapping"
    if "mapping" in parts:
        return "mapping"
    return "generator"


def current_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached weights of every generated layer (generated afresh), or of every supported layer of a plain model."""
    gens = generators(model)
    if gens:
        with torch.no_grad():
            return {name: w.detach().clone() for name, w in generate(gens).items()}
    return {name: layer.weight.detach().clone() for name, layer in model.named_modules() if isinstance(layer, SUPPORTED)}


def weight_spectra(model: nn.Module) -> dict[str, list[float]]:
    """Singular values (descending) of each weight of `current_weights`, viewed as (output channels, rest)."""
    return {name: torch.linalg.svdvals(as_matrix(w, out_channel_dim(model.get_submodule(name))).double()).tolist()
            for name, w in current_weights(model).items()}


def relative_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """||W_after - W_before|| / ||W_before|| over all layers of ``before`` together."""
    num = sum(float((after[k] - w).double().square().sum()) for k, w in before.items())
    den = sum(float(w.double().square().sum()) for w in before.values())
    return math.sqrt(num / max(den, 1e-300))


def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the current gradients per parameter group (see `parameter_group`); groups without gradients absent."""
    sums: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            group = parameter_group(name)
            sums[group] = sums.get(group, 0.0) + float(p.grad.double().square().sum())
    return {k: math.sqrt(v) for k, v in sums.items()}


@dataclass
class LayerSignal:
    """Per-layer statistics of a generated weight and of the generator's inputs.

    Attributes:
        layer: layer name.
        near_zero: share of basis states whose probability is below 1 % of uniform (NaN without circuits).
        effective_rank: exp-entropy effective rank of the (C_out, weights per channel) matrix.
        max_rank: min(C_out, weights per channel).
        top_share: share of the matrix's energy in its largest singular value.
        std_ratio: weight std over the std of the classical initialisation it replaced.
    """

    layer: str
    near_zero: float
    effective_rank: float
    max_rank: int
    top_share: float
    std_ratio: float


def layer_signals(model: nn.Module) -> list[LayerSignal]:
    """`LayerSignal` of every QPG-generated layer of a wrapped model."""
    rows = []
    gens = {n: g for n, g in generators(model).items() if isinstance(g, QPGGenerator)}
    weights = current_weights(model)
    for name, gen in gens.items():
        near = float("nan")
        if gen.uses_circuit:
            with torch.no_grad():
                measured = gen.measure()
            probs = measured.square() if gen.circuit_output == "amplitudes" else measured
            near = float((probs[:, : gen.n_states] * (1 << gen.spec.n_qubits) < 0.01).double().mean())
        matrix = as_matrix(weights[name] - (gen.base if gen.config.residual else 0), gen.out_dim).double()
        s = torch.linalg.svdvals(matrix)
        rows.append(LayerSignal(name, near, effective_rank(matrix), min(matrix.shape),
                                float(s[0].square() / s.square().sum().clamp_min(1e-300)),
                                float(weights[name].std()) / gen.target_std))
    return rows


def svd_error(weight: torch.Tensor, out_dim: int, params: int) -> tuple[float, int]:
    """(relative Frobenius error, rank) of the best truncated SVD of ``weight`` with at most ``params`` numbers."""
    matrix = as_matrix(weight.detach(), out_dim).double()
    rank = min(max(params // sum(matrix.shape), 0), min(matrix.shape))
    s = torch.linalg.svdvals(matrix)
    return float(s[rank:].square().sum().sqrt() / s.square().sum().sqrt().clamp_min(1e-300)), rank


def fit_generator(weight: torch.Tensor, out_dim: int, config: QPGConfig, steps: int = 600, lr: float = 0.02,
                  seed: int = 0) -> tuple[QPGGenerator, float]:
    """Fit a fresh generator to ``weight`` by least squares (Adam); returns it and its relative error.

    The representation ceiling of a design: a generator that cannot fit a trained network's weights
    cannot learn them either.
    """
    torch.manual_seed(seed)
    target = weight.detach().float()
    gen = QPGGenerator(tuple(target.shape), out_dim, config, target_std=float(target.std()), base=torch.zeros_like(target))
    optimizer = torch.optim.Adam([p for p in gen.parameters() if p.requires_grad], lr=lr)
    norm = target.square().sum()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = (gen() - target).square().sum() / norm
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        error = float(((gen() - target).square().sum() / norm).sqrt())
    return gen, error


@dataclass
class LayerFit:
    """Representation ceiling of one layer: the generator's and a truncated SVD's relative error at equal size."""

    layer: str
    weights: int
    energy: float
    generator_params: int
    generator_error: float
    svd_rank: int
    svd_error: float


def representation_ceiling(network: nn.Module, config: QPGConfig, steps: int = 600, lr: float = 0.02,
                           seed: int = 0) -> tuple[nn.Module, list[LayerFit]]:
    """Fit every layer ``config`` would generate in a trained plain ``network``; returns the fitted copy and a table.

    The copy is a plain network with each such layer's weight replaced by its best generated fit, so its
    accuracy is the accuracy the design could reach if optimisation were perfect (at this fitting budget).
    """
    import copy

    from .tuner import wrap

    probe = wrap(copy.deepcopy(network), config)  # which layers the design generates (min_compression applied)
    fitted = copy.deepcopy(network)
    table = []
    for name in generators(probe):
        layer = fitted.get_submodule(name)
        out_dim = out_channel_dim(layer)
        gen, error = fit_generator(layer.weight, out_dim, config, steps, lr, seed)
        count = sum(p.numel() for p in gen.parameters() if p.requires_grad)
        svd, rank = svd_error(layer.weight, out_dim, count)
        energy = float(layer.weight.detach().double().square().sum())
        with torch.no_grad():
            layer.weight.copy_(gen())
        table.append(LayerFit(name, layer.weight.numel(), energy, count, error, rank, svd))
    return fitted, table


def energy_weighted(table: list[LayerFit], field: str) -> float:
    """A column's relative errors pooled over layers: sqrt(sum err^2 ||W||^2 / sum ||W||^2)."""
    total = sum(r.energy for r in table)
    return math.sqrt(sum(getattr(r, field) ** 2 * r.energy for r in table) / max(total, 1e-300))
