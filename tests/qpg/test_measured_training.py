"""QPG generators measured on other back-ends, with shots and with noise: same weights where exact, training works."""

import pytest
import torch
from torch import nn

from hqctf.qpg import QPGConfig, wrap
from hqctf.qpg.bank import generate, generators
from hqctf.train.config import ConfigError, load_config
from hqctf.train.models import build_model

pytest.importorskip("pennylane")
pytest.importorskip("qiskit_aer")

BASE = {"chunk": 8, "n_layers": 2, "min_compression": 0.0}  # 4 circuits of 4 qubits: 72 weights each in 9 chunks


def _model(**config) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 4, 3, padding=1), nn.Tanh(),
                        nn.Conv2d(4, 1, 1))
    return wrap(net, QPGConfig(target_modules=("2",), **BASE, **config))


@pytest.mark.parametrize("config", [{"backend": "pennylane"}, {"backend": "qiskit"},
                                    {"backend": "pennylane", "device": "lightning.qubit", "rotations": ("ry", "rz")}])
def test_exact_backends_generate_the_builtin_weights(config):
    rotations = {"rotations": config["rotations"]} if "rotations" in config else {}
    builtin = generate(generators(_model(**rotations)))
    other = generate(generators(_model(**config)))
    assert builtin.keys() == other.keys() == {"2"}
    assert torch.allclose(builtin["2"], other["2"], atol=1e-5)


@pytest.mark.parametrize("config", [
    {"shots": 1000},
    {"backend": "qiskit", "shots": 1000},
    {"depolarizing": 0.02, "readout_error": 0.02},
    {"backend": "pennylane", "device": "default.mixed", "depolarizing": 0.02, "readout_error": [0.01, 0.0, 0.02, 0.0]},
], ids=["builtin-shots", "aer-shots", "builtin-noise", "mixed-noise"])
def test_training_with_shots_or_noise_lowers_the_loss(config):
    model = _model(**config)
    torch.manual_seed(1)
    x = torch.randn(4, 2, 8, 8)
    target = nn.Conv2d(2, 1, 3, padding=1)(x).detach()  # a linear teacher
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(6):
        loss = nn.functional.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    angles = generators(model)["2"].angles
    assert angles.grad is not None and angles.grad.abs().sum() > 0  # the circuits themselves are trained
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("key,value,message", [
    ("backend", "cirq", "unknown backend 'cirq'; choose from"),
    ("shots", 0, "shots must be >= 1"),
    ("readout_error", "[0.1, 2]", r"readout_error must be a probability in \[0, 1\], got 2.0"),
    ("depolarizing", -0.5, r"depolarizing must be a probability in \[0, 1\], got -0.5"),
])
def test_bad_settings_are_one_line_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, ["data.path=x", "mode.name=qpg", f"mode.qpg.{key}={value}"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not measurable"):
        QPGConfig(transform="amplitude", depolarizing=0.01)


def test_back_end_errors_surface_when_the_model_is_built():
    config = load_config(None, ["data.path=x", "mode.name=qpg", "mode.qpg.backend=pennylane",
                                "mode.qpg.device=no.such.device", "model.features=[4, 4, 8, 8, 16, 4]"])
    with pytest.raises(ConfigError, match="mode.qpg: unknown PennyLane device 'no.such.device'"):
        build_model(config.model, config.mode, 2)


@pytest.mark.parametrize("extra,message", [
    ({"mode.qpg.backend": "pennylane", "mode.qpg.device": "no.such.device"},
     "mode.qpg: unknown PennyLane device 'no.such.device'"),
    ({"mode.qpg.depolarizing": 0.01, "model.features": "[4, 4, 8, 8, 128, 4]"},  # 128 x 9 weights: 11-qubit circuits
     "mode.qpg: training with depolarising noise in the builtin engine simulates density matrices of at most 10 "
     "qubits, a layer's circuits have 11"),
])
def test_train_refuses_a_back_end_at_start(tiny_dataset, tiny_overrides, tmp_path, capsys, extra, message):
    """One line, exit 2, before any case is read: no run folder and no preprocessed case in the cache."""
    from hqctf.cli import main

    overrides = tiny_overrides(tiny_dataset, tmp_path / "run", tmp_path / "cache", "qpg", **extra)
    assert main(["train", "openkbp-2d", "--no-progress", *[a for o in overrides for a in ("--set", o)]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists()
