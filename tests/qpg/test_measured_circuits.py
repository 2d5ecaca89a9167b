"""A wrapped model's circuits for hardware: measured probabilities merge into the same weights, the generator
state beside the angles, and the per-layer execution budget."""

import pytest
import torch
from monai.networks.nets import BasicUNet

from hqctf.qpg import QPGConfig, merge, wrap
from hqctf.qpg.circuits import budget, describe, generator_state, measured_layers
from hqctf.qpg.targets import TargetError
from hqctf.quantum import simulate

pytest.importorskip("qiskit")


def _model(**config) -> torch.nn.Module:
    torch.manual_seed(0)
    return wrap(BasicUNet(2, 1, 3, features=(4, 4, 8, 8, 16, 4)), QPGConfig(min_compression=0, **config))


@pytest.mark.parametrize("rotations", [("ry",), ("rx", "rz")])
def test_merge_from_measured_probabilities_equals_merge(rotations):
    model = _model(rotations=rotations, n_layers=2)
    layers = measured_layers(model)
    measured = {name: simulate(gen.angles, gen.spec, engine="torch").detach() for name, gen in layers.items()}
    expected = merge(model).state_dict()
    got = merge(model, measured=measured).state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(got[key], expected[key], atol=1e-6), key
    # other probabilities give other weights, only in the layer they are given for
    name = next(iter(layers))
    other = merge(model, measured={name: measured[name].flip(-1)}).state_dict()
    assert not torch.allclose(other[f"{name}.weight"], expected[f"{name}.weight"], atol=1e-3)
    assert all(torch.equal(other[k], expected[k]) for k in expected if not k.startswith(f"{name}."))


def test_merge_rejects_measured_probabilities_it_cannot_use():
    model = _model()
    name, gen = next(iter(measured_layers(model).items()))
    with pytest.raises(TargetError, match=r"measured probabilities for 'conv_0\.nowhere', which is not a QPG layer"):
        merge(model, measured={"conv_0.nowhere": torch.zeros(1, 2)})
    with pytest.raises(TargetError, match=rf"{name}: measured probabilities of shape \(1, 2\), expected \({gen.rows}, "):
        merge(model, measured={name: torch.zeros(1, 2)})


def test_measured_layers_refuse_models_without_measurable_circuits():
    with pytest.raises(TargetError, match="no QPG circuit layers"):
        measured_layers(_model(inputs="embedding"))
    with pytest.raises(TargetError, match="transform 'amplitude' reads signed amplitudes"):
        measured_layers(_model(transform="amplitude"))


def test_description_and_generator_state():
    model = _model(rotations=("u3",), n_layers=2, ring=False)
    name, gen = next(iter(measured_layers(model).items()))
    d = describe(gen)
    assert d["channels"] == gen.rows and d["qubits"] == gen.spec.n_qubits and d["layers"] == 2
    assert d["rotations"] == ["u3"] and d["ring"] is False and d["angle_shape"] == [gen.rows, 2, 3, gen.spec.n_qubits]
    assert torch.equal(torch.tensor(d["angles"], dtype=gen.angles.dtype), gen.angles.detach())
    state = generator_state(gen)
    assert "angles" not in state and set(state) == set(gen.state_dict()) - {"angles"}
    assert {"mapping.bits_in.weight", "log_gain", "scale"} <= set(state)


def test_budget_counts_parameter_shift_only_for_trained_angles():
    trained = budget(_model(n_layers=2))
    frozen = budget(_model(n_layers=2, inputs="frozen"))
    assert [b.layer for b in trained] == [b.layer for b in frozen]
    for b, f in zip(trained, frozen):
        assert b.angles == 2 * b.qubits and b.single_qubit_gates == 2 * b.qubits
        assert b.forward_per_step == b.circuits and b.gradient_per_step == 2 * b.angles * b.circuits
        assert b.per_step == b.circuits * (1 + 2 * b.angles)
        assert f.gradient_per_step == 0 and f.per_step == f.circuits
