"""The compiled mapping-network kernels against the torch mapping, and their float32 tanh."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from hqctf.qpg import QPGConfig, wrap
from hqctf.qpg.bank import generate, generators
from hqctf.qpg.generator import MappingNetwork


@pytest.mark.parametrize("activation", ["tanh", "none"])
@pytest.mark.parametrize("hidden, chunk", [(16, 1), (5, 3)])
@pytest.mark.parametrize(
    "dtype, tol, grad_tol", [(torch.float64, 1e-12, 1e-12), (torch.float32, 2e-6, 1e-4)], ids=["float64", "float32"]
)
def test_native_mapping_matches_torch(activation, hidden, chunk, dtype, tol, grad_tol, native_mapping):
    """Outputs and gradients; float32 gradients sum 3,700 terms in another order (the kernel adds in float64)."""
    torch.manual_seed(0)
    mapping = MappingNetwork(7, 100, (hidden,), chunk, activation).to(dtype)
    q = (torch.randn(37, 100, dtype=dtype) * 3).requires_grad_()  # 37 channels: ranges split unevenly
    g = torch.randn(37, 100 * chunk, dtype=dtype)
    params = [q, *mapping.parameters()]
    out = mapping(q)
    assert type(out.grad_fn).__name__ == "_NativeMappingBackward"
    ref = mapping._map(q)
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    for got, want in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        scale = want.abs().max()
        torch.testing.assert_close(got / scale, want / scale, atol=grad_tol, rtol=0)


def test_float32_tanh_is_accurate_everywhere(native_mapping):
    """out = tanh(q) through the kernel (identity weights) over [-12, 12] and tiny magnitudes: within 3e-7 relative."""
    mapping = MappingNetwork(1, 1, (1,), 1, "tanh")
    with torch.no_grad():
        for t in mapping.parameters():
            t.fill_(1.0)
        mapping.bits_in.weight.zero_()
        mapping.bits_in.bias.zero_()
        mapping.hidden[0].bias.zero_()
    x = torch.cat([torch.linspace(-12, 12, 100_001), torch.logspace(-30, 1, 500), -torch.logspace(-30, 1, 500)])
    got = mapping(x[:, None].requires_grad_())[:, 0].detach().double()
    want = torch.tanh(x.double())
    assert ((got - want).abs() / want.abs().clamp_min(1e-30)).max() < 3e-7


def test_native_mapping_refuses_what_it_cannot_run():
    mapping = MappingNetwork(3, 8, (4, 4), 1, "tanh", engine="native")
    with pytest.raises(ValueError, match="one hidden layer, tanh or none"):
        mapping(torch.rand(2, 8))


def test_wrapped_layers_generate_the_same_with_either_engine(native_mapping):
    """Compiled simulator + mapping against the torch engine on wrapped layers: weights and every gradient."""
    torch.manual_seed(0)
    model = wrap(nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3), nn.ConvTranspose2d(8, 4, 2)),
                 QPGConfig(min_compression=0, mapping_hidden=(16,), common="balance"))  # subtract: output bias gradient 0
    gens = generators(model)
    params = [p for name, p in model.named_parameters() if "qpg" in name]
    results = {}
    for engine in ("native", "torch"):
        for gen in gens.values():
            gen.config = replace(gen.config, engine=engine)
            gen.mapping.engine = engine
        weights = generate(gens)
        loss = sum((w * torch.linspace(-1, 1, w.numel()).reshape(w.shape)).sum() for w in weights.values())
        results[engine] = (weights, torch.autograd.grad(loss, params))
    for name, weight in results["torch"][0].items():
        torch.testing.assert_close(results["native"][0][name], weight, atol=1e-5 * weight.abs().max().item(), rtol=0)
    for got, want in zip(results["native"][1], results["torch"][1]):
        torch.testing.assert_close(got, want, atol=1e-4 * want.abs().max().item(), rtol=0)
