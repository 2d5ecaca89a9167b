"""QPG weight generation: shapes, gradients, counts, init statistics, rank and errors."""

import math

import pytest
import torch
from torch import nn

from hqctf.qpg import QPGConfig, TargetError, count_parameters, weight_effective_rank, wrap
from hqctf.qpg.bank import generate, generators
from hqctf.qpg.generator import QPGGenerator
from hqctf.qpg.targets import out_channel_dim

LAYERS = [
    ("conv1d", lambda: nn.Conv1d(3, 6, 5), (2, 3, 20)),
    ("conv2d", lambda: nn.Conv2d(4, 8, 3, padding=1), (2, 4, 9, 9)),
    ("conv3d", lambda: nn.Conv3d(2, 5, 3), (1, 2, 6, 6, 6)),
    ("conv2d_grouped", lambda: nn.Conv2d(4, 8, 3, groups=2), (2, 4, 7, 7)),
    ("convtranspose1d", lambda: nn.ConvTranspose1d(4, 3, 2, stride=2), (2, 4, 5)),
    ("convtranspose2d", lambda: nn.ConvTranspose2d(6, 4, 2, stride=2), (2, 6, 5, 5)),
    ("convtranspose3d", lambda: nn.ConvTranspose3d(3, 7, 2, stride=2), (1, 3, 4, 4, 4)),
    ("linear", lambda: nn.Linear(40, 12), (3, 40)),
]


class Holder(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("make, shape", [(m, s) for _, m, s in LAYERS], ids=[n for n, _, _ in LAYERS])
def test_generated_shapes_gradients_and_init(make, shape):
    torch.manual_seed(0)
    model = Holder(make())
    classical_shape = tuple(model.layer.weight.shape)
    classical_std = model.layer.weight.std().item()
    x = torch.randn(shape)
    expected_out = model(x).shape
    wrap(model, QPGConfig())
    layer = model.layer
    assert tuple(layer.weight.shape) == classical_shape
    assert "weight" not in dict(layer.named_parameters(recurse=False))
    assert math.isclose(layer.weight.std().item(), classical_std, rel_tol=1e-4)
    out = model(x)
    assert out.shape == expected_out
    out.square().mean().backward()
    gen = model.layer.qpg
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert layer.bias.grad is not None


@pytest.mark.parametrize("make", [m for _, m, _ in LAYERS], ids=[n for n, _, _ in LAYERS])
@pytest.mark.parametrize("config", [QPGConfig(), QPGConfig(n_layers=3, chunk=4, mapping_hidden=(8, 8))])
def test_trainable_count_formula(make, config):
    model = Holder(make())
    layer = model.layer
    shape, bias = tuple(layer.weight.shape), layer.bias.numel()
    wrap(model, config)
    gen_params = sum(p.numel() for p in model.layer.qpg.parameters())
    assert gen_params == QPGGenerator.trainable_count(shape, out_channel_dim(layer), config)
    assert count_parameters(model) == (gen_params + bias, math.prod(shape) + bias)


def test_trainable_count_by_hand():
    # Conv2d(4, 8, 3): M = 36 weights per channel -> n = 6 qubits; L = 2 -> 8 * 6 * 2 = 96 angles;
    # mapping (16,): bits 6*16 + 16, probability 16, output 16 + 1 -> 145; gain 1.
    assert QPGGenerator.trainable_count((8, 4, 3, 3), 0, QPGConfig()) == 96 + 145 + 1
    # chunk 4: ceil(36 / 4) = 9 states -> n = 4; mapping output 4 wide: 4*16+16 + 16 + 16*4+4
    assert QPGGenerator.trainable_count((8, 4, 3, 3), 0, QPGConfig(chunk=4)) == 8 * 4 * 2 + 164 + 1


@pytest.mark.parametrize("rotations", [("rx", "ry"), ("u3",)])
def test_complex_circuits_generate_and_train(rotations):
    model = Holder(nn.Conv2d(3, 4, 3))
    wrap(model, QPGConfig(rotations=rotations, entangler="cz"))
    model(torch.randn(1, 3, 6, 6)).square().sum().backward()  # a plain sum is blind to centred weights
    assert model.layer.qpg.angles.grad.abs().sum() > 0


def test_finite_shots_perturb_weights_but_keep_gradients():
    torch.manual_seed(0)
    exact = Holder(nn.Conv2d(3, 4, 3))
    shots = Holder(nn.Conv2d(3, 4, 3))
    shots.load_state_dict(exact.state_dict())
    wrap(exact, QPGConfig())
    torch.manual_seed(1)
    wrap(shots, QPGConfig(shots=64))
    shots.layer.qpg.load_state_dict(exact.layer.qpg.state_dict())
    w_exact, w_shots = generate(generators(exact))["layer"], generate(generators(shots))["layer"]
    assert not torch.allclose(w_exact, w_shots)
    w_shots.square().sum().backward()
    assert shots.layer.qpg.angles.grad.abs().sum() > 0


@pytest.mark.parametrize("out_channels, in_channels", [(2, 32), (3, 4), (8, 16), (64, 32)])
def test_balancing_the_common_component_raises_rank(out_channels, in_channels):
    """Averaged over seeds, balancing beats no balancing and keeps >= 0.7 of the maximum rank, even for 2 channels."""
    ratios = {}
    for centre in (True, False):
        values = []
        for seed in range(4):
            torch.manual_seed(seed)
            model = wrap(Holder(nn.Conv2d(in_channels, out_channels, 3)), QPGConfig(centre=centre))
            rank, max_rank = weight_effective_rank(model.layer.weight)
            values.append(rank / max_rank)
        ratios[centre] = sum(values) / len(values)
    assert ratios[True] >= 0.7
    assert ratios[True] > ratios[False]


def test_qubit_limit_suggests_chunking():
    with pytest.raises(TargetError, match=r"needs 6 qubits, over max_qubits=4.*chunk >= 3"):
        wrap(Holder(nn.Conv2d(4, 8, 3)), QPGConfig(max_qubits=4))
    wrap(Holder(nn.Conv2d(4, 8, 3)), QPGConfig(max_qubits=4, chunk=3))


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Bilinear(3, 3, 2))
    with pytest.raises(TargetError, match=r"layer '1' of type Bilinear cannot be generated"):
        wrap(model, QPGConfig())


def test_pattern_matching_nothing_lists_layer_names():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1))
    with pytest.raises(TargetError, match=r"matched no supported layer; layer names are: 0, 2"):
        wrap(model, QPGConfig(target_modules=("encoder.*",)))


def test_normalisation_layers_stay_classical_and_exclusions_apply():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    wrap(model, QPGConfig(exclude_modules=("2",)))
    assert list(generators(model)) == ["0"]
    assert isinstance(model[1].weight, nn.Parameter) and isinstance(model[2].weight, nn.Parameter)


def test_wrapping_twice_is_refused():
    model = Holder(nn.Linear(4, 4))
    wrap(model, QPGConfig())
    with pytest.raises(TargetError, match="merge it before wrapping again"):
        wrap(model, QPGConfig())


@pytest.mark.parametrize("hidden, activation", [((16,), "tanh"), ((8, 8), "gelu"), ((4,), "none")])
def test_chunked_mapping_matches_plain_autograd(monkeypatch, hidden, activation):
    """Mapping channels in chunks and recomputing them in backward changes no value and no gradient."""
    from hqctf.qpg import generator

    torch.manual_seed(0)
    mapping = generator.MappingNetwork(6, 50, hidden, 2, activation, engine="torch").double()
    q = torch.randn(13, 50, dtype=torch.float64, requires_grad=True)
    g = torch.randn(13, 100, dtype=torch.float64)
    params = [q, *mapping.parameters()]
    plain = mapping._map(q)
    expected = torch.autograd.grad(plain, params, g)
    monkeypatch.setattr(generator, "CHUNK_ELEMENTS", 3 * 50 * max(hidden))  # 3 channels a chunk, last one short
    out = mapping(q)
    assert out.grad_fn is not None and "ChunkedRecompute" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, plain, atol=0, rtol=0)
    for got, want in zip(torch.autograd.grad(out, params, g), expected):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        assert mapping(q).grad_fn is None
