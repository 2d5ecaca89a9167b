"""Generator diagnostics on tiny models: parameter groups, update sizes, input signal, rank and fitting ceilings."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from hqctf.qpg import LoRAConfig, QPGConfig, wrap
from hqctf.qpg.diagnostics import (
    current_weights,
    energy_weighted,
    fit_generator,
    grad_norms,
    layer_signals,
    parameter_group,
    relative_change,
    representation_ceiling,
    svd_error,
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))


@pytest.mark.parametrize("name, group", [
    ("conv.qpg.angles", "angles"), ("conv.qpg.embedding", "embedding"), ("conv.qpg.mapping.bits_in.weight", "mapping"),
    ("conv.qpg.mapping.prob_in", "mapping"), ("conv.qpg.log_gain", "gain"), ("conv.qpg.common_row", "mapping"), ("conv.qpg.lora_A", "generator"),
    ("conv.bias", "classical"), ("norm.weight", "classical"),
])
def test_parameter_groups(name, group):
    assert parameter_group(name) == group


def test_grad_norms_cover_every_group_with_gradients():
    model = wrap(_net(), QPGConfig(min_compression=0, gain="channel"))
    model(torch.randn(2, 2, 6, 6)).square().sum().backward()
    norms = grad_norms(model)
    assert set(norms) == {"angles", "mapping", "gain", "classical"}
    expected = math.sqrt(sum(float(p.grad.double().square().sum()) for n, p in model.named_parameters()
                             if n.endswith("angles")))
    assert math.isclose(norms["angles"], expected, rel_tol=1e-9)


def test_relative_change_of_one_step_matches_the_definition():
    model = wrap(_net(), LoRAConfig(r=2))
    before = current_weights(model)
    with torch.no_grad():
        model[3].qpg.lora_B.add_(0.1)
    after = current_weights(model)
    num = sum(float((after[k] - before[k]).double().square().sum()) for k in before)
    den = sum(float(before[k].double().square().sum()) for k in before)
    assert math.isclose(relative_change(before, after), math.sqrt(num / den), rel_tol=1e-9)
    assert set(current_weights(_net())) == {"0", "3"}  # a plain model: its supported layers


def test_layer_signals_at_initialisation():
    model = wrap(_net(), QPGConfig(min_compression=0, n_layers=2))
    signals = {s.layer: s for s in layer_signals(model)}
    assert set(signals) == {"0", "3"}
    for s in signals.values():
        assert 0 <= s.near_zero <= 1 and 1 <= s.effective_rank <= s.max_rank and 0 < s.top_share <= 1
        assert math.isclose(s.std_ratio, 1.0, rel_tol=1e-4)
    # a product state (no entangler, L = 1) from angles pi/2 is uniform: no near-zero basis state
    flat = wrap(_net(), QPGConfig(min_compression=0, n_layers=1, entangler="none"))
    with torch.no_grad():
        for gen in (flat[0].qpg, flat[3].qpg):
            gen.angles.fill_(math.pi / 2)
    assert all(s.near_zero == 0 for s in layer_signals(flat))


def test_svd_error_against_numpy():
    torch.manual_seed(1)
    weight = torch.randn(6, 4, 3, 3)
    matrix = weight.reshape(6, -1).double().numpy()
    s = np.linalg.svd(matrix, compute_uv=False)
    error, rank = svd_error(weight, 0, params=2 * (6 + 36) + 5)
    assert rank == 2
    assert math.isclose(error, math.sqrt((s[2:] ** 2).sum() / (s ** 2).sum()), rel_tol=1e-9)
    assert svd_error(weight, 0, params=10**6) == (0.0, 6)


def test_fitting_lowers_the_error_and_the_ceiling_table_is_consistent():
    net = _net()
    target = net[3].weight
    config = QPGConfig(min_compression=0, transform="sqrt", mapping_hidden=(), common="subtract", n_layers=4)
    _, short = fit_generator(target, 0, config, steps=1)
    _, long = fit_generator(target, 0, config, steps=200)
    assert long < short
    fitted, table = representation_ceiling(net, config, steps=50)
    assert [r.layer for r in table] == ["0", "3"]
    _, compressed = representation_ceiling(net, dataclasses.replace(config, min_compression=1), steps=1)
    assert [r.layer for r in compressed] == ["3"]  # layer 0's generator would be larger than its 288 weights
    for row in table:
        assert 0 <= row.svd_error <= 1 and row.svd_rank == min(row.generator_params // (16 + row.weights // 16), 16)
        gen_error = (fitted.get_submodule(row.layer).weight - net.get_submodule(row.layer).weight).norm()
        assert math.isclose(float(gen_error / net.get_submodule(row.layer).weight.norm()), row.generator_error,
                            rel_tol=1e-4)
    pooled = energy_weighted(table, "generator_error")
    assert min(r.generator_error for r in table) <= pooled <= max(r.generator_error for r in table)
    assert isinstance(fitted[3].weight, nn.Parameter) and not hasattr(fitted[3], "qpg")
