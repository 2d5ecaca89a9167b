"""PennyLane and Qiskit Aer reproduce the builtin engine's probabilities and angle gradients; bad requests fail."""

import sys

import pytest
import torch

from hqctf.quantum import CircuitSpec
from hqctf.quantum.backends import BackendError, check_training, probabilities

qml = pytest.importorskip("pennylane")
pytest.importorskip("qiskit_aer")

SPECS = [CircuitSpec(3, 2), CircuitSpec(3, 2, rotations=("rx", "rz", "u3"), entangler="cz")]
BACKENDS = [("pennylane", "default.qubit"), ("pennylane", "lightning.qubit"), ("qiskit", None)]


def _with_grad(angles: torch.Tensor, spec: CircuitSpec, weights: torch.Tensor, **kw):
    x = angles.clone().requires_grad_()
    probs = probabilities(x, spec, **kw)
    (grad,) = torch.autograd.grad((probs * weights).sum(), x)
    return probs.detach(), grad


@pytest.fixture(scope="module")
def circuits():
    torch.manual_seed(0)
    return {spec: (torch.rand(4, *spec.angle_shape, dtype=torch.float64) * 6,
                   torch.randn(4, 1 << spec.n_qubits, dtype=torch.float64)) for spec in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=["ry", "rx-rz-u3"])
@pytest.mark.parametrize("backend,device", BACKENDS, ids=["default.qubit", "lightning.qubit", "aer"])
def test_exact_probabilities_and_gradients_match_builtin(circuits, spec, backend, device):
    angles, weights = circuits[spec]
    ref_p, ref_g = _with_grad(angles, spec, weights)
    p, g = _with_grad(angles, spec, weights, backend=backend, device=device)
    assert p.dtype == angles.dtype and p.shape == (4, 8)
    assert torch.allclose(p, ref_p, atol=1e-6) and torch.allclose(g, ref_g, atol=1e-6)


@pytest.mark.parametrize("backend,device", [("pennylane", "default.mixed"), ("qiskit", None)], ids=["mixed", "aer"])
def test_noisy_exact_probabilities_and_gradients_match_builtin(circuits, backend, device):
    spec = SPECS[1]
    angles, weights = circuits[spec]
    noise = {"depolarizing": 0.03, "readout": (0.02, 0.0, 0.05)}
    ref_p, ref_g = _with_grad(angles, spec, weights, **noise)
    p, g = _with_grad(angles, spec, weights, backend=backend, device=device, **noise)
    assert torch.allclose(p, ref_p, atol=1e-6) and torch.allclose(g, ref_g, atol=1e-6)


@pytest.mark.parametrize("backend", ["builtin", "pennylane", "qiskit"])
def test_shots_estimate_the_noisy_probabilities(circuits, backend):
    spec = SPECS[0]
    angles, weights = circuits[spec]
    exact = probabilities(angles, spec, readout=0.05)
    torch.manual_seed(3)
    first = probabilities(angles, spec, backend=backend, shots=20000, readout=0.05)
    torch.manual_seed(3)
    again = probabilities(angles, spec, backend=backend, shots=20000, readout=0.05)
    assert (first - exact).abs().max() < 0.02 and (first - exact).abs().max() > 0  # sampled, not exact
    if backend != "pennylane":  # PennyLane devices draw their own seeds
        assert torch.equal(first, again)
    x = angles.clone().requires_grad_()
    (probabilities(x, spec, backend=backend, shots=20000) * weights).sum().backward()
    _, ref = _with_grad(angles, spec, weights)
    assert (x.grad - ref).abs().max() < 0.15  # a shot-noise estimate of the exact gradient


def test_float32_angles_come_back_float32(circuits):
    spec = SPECS[0]
    angles = circuits[spec][0].float()
    for backend in ("pennylane", "qiskit"):
        assert probabilities(angles, spec, backend=backend).dtype == torch.float32


def test_bad_requests(monkeypatch):
    spec, angles = CircuitSpec(3, 1), torch.zeros(1, 1, 1, 3)
    cases = [
        ({"backend": "cirq"}, "unknown backend 'cirq'; choose from"),
        ({"shots": 0}, "shots must be >= 1, got 0"),
        ({"readout": (0.1, 1.5, 0)}, r"readout_error must be a probability in \[0, 1\], got 1.5"),
        ({"depolarizing": -0.1}, r"depolarizing must be a probability in \[0, 1\], got -0.1"),
        ({"readout": (0.1, 0.1)}, "readout_error has 2 entries, but the circuits have 3 qubits"),
        ({"backend": "pennylane", "device": "no.such.device"},
         "unknown PennyLane device 'no.such.device'.*installed: .*default.qubit"),
        ({"backend": "pennylane", "device": qml.device("default.qubit", wires=2)},
         "default.qubit has 2 wires; these circuits need 3"),
        ({"backend": "pennylane", "device": "default.qubit", "depolarizing": 0.1},
         "default.qubit: .*DepolarizingChannel.*needs a mixed-state device such as default.mixed"),
        ({"backend": "qiskit", "device": "stabiliser"}, "unknown Aer method 'stabiliser'"),
        ({"backend": "qiskit", "device": "statevector", "depolarizing": 0.1}, "need Aer method density_matrix"),
    ]
    for kw, message in cases:
        with pytest.raises(BackendError, match=message) as info:
            probabilities(angles, spec, **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match="depolarising noise in the builtin engine simulates at most 13 qubits"):
        probabilities(torch.zeros(1, 1, 1, 14), CircuitSpec(14, 1), depolarizing=0.01)  # evaluation: Pauli basis
    with pytest.raises(BackendError, match="density matrices of at most 10 qubits, a layer's circuits have 11"):
        check_training(CircuitSpec(11, 2), "builtin", 0.01)  # training: density matrices
    check_training(CircuitSpec(11, 2), "qiskit", 0.01)
    check_training(CircuitSpec(11, 2), "builtin", 0.0)
    for module, backend in (("pennylane", "pennylane"), ("qiskit_aer", "qiskit")):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # what an environment without the package imports
            with pytest.raises(BackendError, match=rf'backend {backend} needs {module}.*"hqctf\[quantum\]"'):
                probabilities(angles, spec, backend=backend)
