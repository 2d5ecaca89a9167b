"""Noise in the builtin engine against independent references: a Kronecker confusion matrix, PennyLane default.mixed."""

import functools

import pytest
import torch

from hqctf.quantum import CircuitSpec, simulate
from hqctf.quantum.ansatz import gates
from hqctf.quantum.noise import depolarized_probabilities, readout

qml = pytest.importorskip("pennylane")

SPECS = [CircuitSpec(3, 2), CircuitSpec(3, 2, rotations=("rx", "rz", "u3"), entangler="cz")]
_OPS = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ, "u3": qml.U3, "cnot": qml.CNOT, "cz": qml.CZ}


def test_readout_is_the_kronecker_confusion_matrix():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(5, 16, dtype=torch.float64), 1).requires_grad_()
    errors = (0.01, 0.2, 0.0, 0.5)
    matrix = functools.reduce(torch.kron, [torch.tensor([[1 - e, e], [e, 1 - e]], dtype=torch.float64) for e in errors])
    noisy = readout(probs, errors)
    assert torch.allclose(noisy, probs @ matrix.T, atol=1e-12)
    assert torch.allclose(noisy.sum(1), torch.ones(5, dtype=torch.float64))
    weights = torch.randn(5, 16, dtype=torch.float64)
    (noisy * weights).sum().backward()
    assert torch.allclose(probs.grad, weights @ matrix, atol=1e-12)
    assert torch.allclose(readout(probs, 0.1), probs @ functools.reduce(
        torch.kron, [torch.tensor([[0.9, 0.1], [0.1, 0.9]], dtype=torch.float64)] * 4).T, atol=1e-12)


def _mixed_reference(spec: CircuitSpec, angles: torch.Tensor, p: float) -> torch.Tensor:
    """PennyLane default.mixed with qml.DepolarizingChannel(p) on each qubit of every gate, after it."""
    dev = qml.device("default.mixed", wires=spec.n_qubits)

    @qml.qnode(dev)
    def circuit(one):
        for gate in gates(spec, one):
            _OPS[gate.name](*gate.params, wires=list(gate.wires))
            for w in gate.wires:
                qml.DepolarizingChannel(p, wires=w)
        return qml.probs(wires=range(spec.n_qubits))

    return torch.stack([torch.as_tensor(circuit(a)) for a in angles])


@pytest.mark.parametrize("engine", ["native", "torch"])
@pytest.mark.parametrize("spec", [*SPECS, CircuitSpec(4, 2, rotations=("ry",), entangler="cnot", ring=True),
                                  CircuitSpec(2, 1, rotations=("u3",), entangler="cz"),
                                  CircuitSpec(1, 2, rotations=("u3", "rx"))])
def test_the_pauli_basis_simulation_matches_default_mixed(spec, engine, native_pauli):
    """Without gradients (evaluation), depolarising noise is simulated in the Pauli basis."""
    torch.manual_seed(2)
    angles = torch.rand(3, *spec.angle_shape, dtype=torch.float64) * 6
    for p in (0.0, 0.02, 0.3):
        probs = depolarized_probabilities(angles, spec, p, engine=engine)
        assert torch.allclose(probs, _mixed_reference(spec, angles, p), atol=1e-10)
    with torch.no_grad():  # angles that require grad, under no_grad, take the same path
        probs = depolarized_probabilities(angles.clone().requires_grad_(), spec, 0.02, engine=engine)
    assert not probs.requires_grad
    assert torch.allclose(probs, _mixed_reference(spec, angles, 0.02), atol=1e-10)


@pytest.mark.parametrize("spec", SPECS)
def test_depolarizing_matches_default_mixed(spec):
    torch.manual_seed(1)
    angles = (torch.rand(2, *spec.angle_shape, dtype=torch.float64) * 6).requires_grad_()
    probs = depolarized_probabilities(angles, spec, 0.05)
    assert torch.allclose(probs, _mixed_reference(spec, angles.detach(), 0.05), atol=1e-6)
    weights = torch.randn_like(probs)
    (grad,) = torch.autograd.grad((probs * weights).sum(), angles)
    for _ in range(3):  # directional derivatives of the reference by central differences
        v, h = torch.randn_like(angles), 1e-5
        plus, minus = (_mixed_reference(spec, (angles + s * h * v).detach(), 0.05) for s in (1, -1))
        assert float((grad * v).sum()) == pytest.approx(float(((plus - minus) / (2 * h) * weights).sum()), abs=1e-6)


def test_no_depolarizing_is_the_statevector():
    spec = SPECS[1]
    angles = torch.rand(3, *spec.angle_shape, dtype=torch.float64) * 6
    assert torch.allclose(depolarized_probabilities(angles, spec, 0.0), simulate(angles, spec), atol=1e-12)
    assert torch.allclose(depolarized_probabilities(angles, spec, 0.75),
                          torch.full((3, 8), 1 / 8, dtype=torch.float64), atol=1e-12)  # p = 3/4: fully mixed


def test_the_pauli_basis_simulation_is_the_density_matrix_one_at_float32():
    spec = CircuitSpec(6, 3, rotations=("ry",), entangler="cnot", ring=True)
    angles = torch.rand(5, *spec.angle_shape) * 6
    dense = depolarized_probabilities(angles.clone().requires_grad_(), spec, 0.01)
    assert torch.allclose(depolarized_probabilities(angles, spec, 0.01), dense.detach(), atol=1e-6)


@pytest.mark.parametrize("spec", [
    CircuitSpec(8, 2, rotations=("ry",), entangler="cnot", ring=True),  # from 8 qubits on: low digits block by block
    CircuitSpec(9, 2, rotations=("rx", "rz"), entangler="cz"),
    CircuitSpec(10, 1, rotations=("u3",), entangler="cnot", ring=True),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_native_pauli_kernel_is_the_torch_path(spec, dtype, native_pauli):
    torch.manual_seed(3)
    angles = torch.rand(4, *spec.angle_shape, dtype=dtype) * 6
    native = depolarized_probabilities(angles, spec, 0.01, engine="native")
    torch.testing.assert_close(native, depolarized_probabilities(angles, spec, 0.01, engine="torch"),
                               atol=1e-12 if dtype == torch.float64 else 2e-6, rtol=0)
    assert native.dtype == dtype
    torch.testing.assert_close(native.sum(1), torch.ones(4, dtype=dtype), atol=1e-5, rtol=0)


def test_refusals():
    with pytest.raises(ValueError, match="training .* at most 10 qubits.*backend: pennylane with device: default.mixed"):
        depolarized_probabilities(torch.zeros(1, 1, 1, 11, requires_grad=True), CircuitSpec(11, 1), 0.01)
    with pytest.raises(ValueError, match="at most 13 qubits, these circuits have 14; use backend: qiskit"):
        depolarized_probabilities(torch.zeros(1, 1, 1, 14), CircuitSpec(14, 1), 0.01)
    with pytest.raises(ValueError, match="readout_error has 2 entries, but the circuits have 3 qubits"):
        readout(torch.ones(1, 8) / 8, (0.1, 0.2))
    with pytest.raises(ValueError, match="native Pauli engine runs float32/64 on the CPU"):
        depolarized_probabilities(torch.zeros(1, 1, 1, 2, dtype=torch.bfloat16), CircuitSpec(2, 1), 0.01, engine="native")
    with pytest.raises(ValueError, match="unknown engine 'fast'"):
        depolarized_probabilities(torch.zeros(1, 1, 1, 2), CircuitSpec(2, 1), 0.01, engine="fast")
