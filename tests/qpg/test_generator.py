"""QPG weight generation: shapes, gradients, counts, init statistics, rank and errors."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from hqctf.qpg import QPGConfig, TargetError, count_parameters, weight_effective_rank, wrap
from hqctf.qpg.bank import generate, generators
from hqctf.qpg.diagnostics import layer_signals
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
    wrap(model, QPGConfig(min_compression=0))
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
@pytest.mark.parametrize("config", [QPGConfig(min_compression=0), QPGConfig(min_compression=0, n_layers=3, chunk=4, mapping_hidden=(8, 8))])
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
    # mapping (16,): bits 6*16 + 16, probability 16, output 16 + 1 -> 145; one layer gain.
    v0 = QPGConfig(n_layers=2, mapping_hidden=(16,), gain="layer")
    assert QPGGenerator.trainable_count((8, 4, 3, 3), 0, v0) == 96 + 145 + 1
    # chunk 4: ceil(36 / 4) = 9 states -> n = 4; mapping output 4 wide: 4*16+16 + 16 + 16*4+4
    assert QPGGenerator.trainable_count((8, 4, 3, 3), 0, dataclasses.replace(v0, chunk=4)) == 8 * 4 * 2 + 164 + 1
    # the defaults: L = 4 -> 8 * 6 * 4 = 192 angles; affine mapping: bits 6 + 1 bias + 1 probability weight; 8 gains
    assert QPGGenerator.trainable_count((8, 4, 3, 3), 0, QPGConfig()) == 192 + 8 + 8


@pytest.mark.parametrize("rotations", [("rx", "ry"), ("u3",)])
def test_complex_circuits_generate_and_train(rotations):
    model = Holder(nn.Conv2d(3, 4, 3))
    wrap(model, QPGConfig(min_compression=0, rotations=rotations, entangler="cz"))
    model(torch.randn(1, 3, 6, 6)).square().sum().backward()  # a plain sum is blind to centred weights
    assert model.layer.qpg.angles.grad.abs().sum() > 0


def test_finite_shots_perturb_weights_but_keep_gradients():
    torch.manual_seed(0)
    exact = Holder(nn.Conv2d(3, 4, 3))
    shots = Holder(nn.Conv2d(3, 4, 3))
    shots.load_state_dict(exact.state_dict())
    wrap(exact, QPGConfig(min_compression=0))
    torch.manual_seed(1)
    wrap(shots, QPGConfig(min_compression=0, shots=64))
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
            model = wrap(Holder(nn.Conv2d(in_channels, out_channels, 3)), QPGConfig(min_compression=0, common="balance" if centre else "none"))
            rank, max_rank = weight_effective_rank(model.layer.weight)
            values.append(rank / max_rank)
        ratios[centre] = sum(values) / len(values)
    assert ratios[True] >= 0.7
    assert ratios[True] > ratios[False]


def test_qubit_limit_suggests_chunking():
    with pytest.raises(TargetError, match=r"needs 6 qubits, over max_qubits=4.*chunk >= 3"):
        wrap(Holder(nn.Conv2d(4, 8, 3)), QPGConfig(min_compression=0, max_qubits=4))
    wrap(Holder(nn.Conv2d(4, 8, 3)), QPGConfig(min_compression=0, max_qubits=4, chunk=3))


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Bilinear(3, 3, 2))
    with pytest.raises(TargetError, match=r"layer '1' of type Bilinear cannot be generated"):
        wrap(model, QPGConfig(min_compression=0))


def test_pattern_matching_nothing_lists_layer_names():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1))
    with pytest.raises(TargetError, match=r"matched no supported layer; layer names are: 0, 2"):
        wrap(model, QPGConfig(min_compression=0, target_modules=("encoder.*",)))


def test_normalisation_layers_stay_classical_and_exclusions_apply():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    wrap(model, QPGConfig(min_compression=0, exclude_modules=("2",)))
    assert list(generators(model)) == ["0"]
    assert isinstance(model[1].weight, nn.Parameter) and isinstance(model[2].weight, nn.Parameter)


def test_wrapping_twice_is_refused():
    model = Holder(nn.Linear(4, 4))
    wrap(model, QPGConfig(min_compression=0))
    with pytest.raises(TargetError, match="merge it before wrapping again"):
        wrap(model, QPGConfig(min_compression=0))


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


# one row per generator option: shapes, merge equality, gradients to every trainable part, trainable counts
OPTIONS = [
    dict(transform="sqrt", mapping_hidden=(), common="subtract", gain="channel"),
    dict(transform="amplitude", mapping_hidden=(), common="subtract", gain="channel"),
    dict(transform="log", common="none"),
    dict(transform="sqrt", mapping_hidden=(), common="learned"),
    dict(transform="qt", init="hyperfan"),
    dict(transform="sqrt", mapping_hidden=(), init="hyperfan"),
    dict(inputs="embedding", mapping_hidden=(), gain="channel"),
    dict(inputs="softmax", transform="sqrt", mapping_hidden=()),
    dict(inputs="frozen", transform="sqrt", mapping_hidden=()),
    dict(residual=True, transform="sqrt", mapping_hidden=()),
    dict(n_layers=6, chunk=3, mapping_hidden=(8, 8), mapping_activation="gelu"),
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("make, shape", [(m, s) for n, m, s in LAYERS if n in ("conv2d", "convtranspose2d", "linear")],
                         ids=["conv2d", "convtranspose2d", "linear"])
def test_generator_options(options, make, shape):
    from hqctf.qpg import merge

    torch.manual_seed(0)
    model = Holder(make())
    weight0 = model.layer.weight.detach().clone()
    classical_std = weight0.std().item()
    config = QPGConfig(min_compression=0, **options)
    wrap(model, config)
    gen = model.layer.qpg
    generated = model.layer.weight - (weight0 if config.residual else 0)
    assert tuple(model.layer.weight.shape) == tuple(weight0.shape)
    assert math.isclose(generated.std().item(), classical_std, rel_tol=1e-4)
    if config.init == "hyperfan":
        assert gen.scale.item() == 1.0
    x = torch.randn(shape)
    model.eval()
    merged = merge(model)
    torch.testing.assert_close(merged(x), model(x), atol=1e-6, rtol=1e-5)
    model.train()
    model(x).square().sum().backward()
    trainable = {n: p for n, p in gen.named_parameters() if p.requires_grad}
    for name, p in trainable.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if config.inputs == "frozen":
        assert not gen.angles.requires_grad and gen.angles.grad is None
    assert sum(p.numel() for p in trainable.values()) == QPGGenerator.trainable_count(
        tuple(weight0.shape), out_channel_dim(model.layer), config)


def test_a_subtracted_common_row_costs_one_rank_and_a_learned_one_gives_it_back():
    torch.manual_seed(0)
    ranks = {}
    for common in ("subtract", "learned"):
        model = wrap(Holder(nn.Conv2d(8, 8, 3)), QPGConfig(min_compression=0, common=common))
        gen = model.layer.qpg
        if common == "learned":
            with torch.no_grad():
                gen.common_row.normal_(std=float(gen._generated(gen.measure()).std() / gen.scale))
        s = torch.linalg.svdvals(gen._generated(gen.measure()).double())
        ranks[common] = int((s > 1e-6 * s[0]).sum())
    assert ranks == {"subtract": 7, "learned": 8}


def test_residual_generator_adds_the_frozen_initial_weight():
    torch.manual_seed(0)
    model = Holder(nn.Conv2d(4, 8, 3))
    weight0 = model.layer.weight.detach().clone()
    wrap(model, QPGConfig(min_compression=0, residual=True))
    gen = model.layer.qpg
    torch.testing.assert_close(gen.base, weight0)
    assert not any(p is gen.base for p in gen.parameters())
    torch.testing.assert_close(model.layer.weight - weight0, gen._generated(gen.measure()).reshape(weight0.shape))


def test_embedding_inputs_have_the_circuit_budget_and_no_circuit():
    config = QPGConfig(min_compression=0, inputs="embedding", n_layers=3)
    model = wrap(Holder(nn.Conv2d(4, 8, 3)), config)
    gen = model.layer.qpg
    assert not hasattr(gen, "angles") and tuple(gen.embedding.shape) == (8, gen.spec.n_params)
    circuit = QPGGenerator.trainable_count((8, 4, 3, 3), 0, dataclasses.replace(config, inputs="circuit"))
    assert QPGGenerator.trainable_count((8, 4, 3, 3), 0, config) == circuit
    assert math.isnan(layer_signals(model)[0].near_zero)


def test_softmax_inputs_are_classical_probabilities_and_not_rank_capped():
    torch.manual_seed(0)
    ranks = {}
    for inputs in ("embedding", "softmax"):
        config = QPGConfig(min_compression=0, inputs=inputs, n_layers=1, common="learned")
        model = wrap(Holder(nn.Conv2d(32, 64, 3)), config)  # 9 qubits, 9 angles a channel, 64 channels
        gen = model.layer.qpg
        probs = torch.softmax(gen.embedding @ gen.projection, -1)
        if inputs == "softmax":
            torch.testing.assert_close(probs.sum(-1), torch.ones(64))
            torch.testing.assert_close(gen.inputs(None), gen.transform(probs))
        assert QPGGenerator.trainable_count((64, 32, 3, 3), 0, config) == QPGGenerator.trainable_count(
            (64, 32, 3, 3), 0, dataclasses.replace(config, inputs="circuit"))
        with torch.no_grad():
            gen.common_row.normal_()
            s = torch.linalg.svdvals(gen._generated(None).double())
        ranks[inputs] = int((s > 1e-6 * s[0]).sum())
    # a linear projection of 9 numbers (plus the learned common row) against a nonlinear one
    assert ranks == {"embedding": 10, "softmax": 64}
    with pytest.raises(ValueError, match="inputs 'softmax' are probabilities"):
        QPGConfig(inputs="softmax", transform="amplitude")


def test_small_layers_stay_classical_and_the_report_says_so():
    from hqctf.qpg import trainable_report

    # Conv2d(1, 4, 3): 36 weights, generator 4*4*2 angles + mapping > 36; Conv2d(16, 32, 3): 4,608 weights
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 32, 3), nn.Conv2d(32, 32, 3))
    wrap(model, QPGConfig())
    assert "0" not in generators(model) and isinstance(model[0].weight, nn.Parameter)
    assert set(generators(model)) == {"1", "2"}
    assert "0: kept classical: its generator would have" in trainable_report(model)
    with pytest.raises(TargetError, match="nothing to generate"):
        wrap(Holder(nn.Conv2d(1, 4, 3)), QPGConfig())


@pytest.mark.parametrize("bad, message", [
    (dict(transform="square"), "unknown transform 'square'"),
    (dict(common="mean"), "unknown common 'mean'"),
    (dict(inputs="random"), "unknown inputs 'random'"),
    (dict(gain="row"), "unknown gain 'row'"),
    (dict(init="xavier"), "unknown init 'xavier'"),
    (dict(transform="amplitude", shots=100), "not measurable"),
    (dict(transform="amplitude", rotations=("rx", "ry")), "needs real circuits"),
    (dict(min_compression=-1), "min_compression must be >= 0"),
])
def test_bad_options_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        QPGConfig(**bad)
