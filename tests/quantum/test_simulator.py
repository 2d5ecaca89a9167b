"""The batched simulator against PennyLane's default.qubit, gate by gate and gradient by gradient."""

import math

import numpy as np
import pytest
import torch

from hqctf.quantum import CircuitSpec, sample_probabilities, simulate

qml = pytest.importorskip("pennylane")

_GATES = {"rx": "RX", "ry": "RY", "rz": "RZ"}


def pennylane_probs(spec: CircuitSpec, angles: torch.Tensor) -> torch.Tensor:
    """Reference probabilities for one circuit with angles (L, G, n), built gate by gate in PennyLane."""
    dev = qml.device("default.qubit", wires=spec.n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(a):
        for layer in range(spec.n_layers):
            g = 0
            for name in spec.rotations:
                for q in range(spec.n_qubits):
                    if name == "u3":
                        qml.U3(a[layer, g, q], a[layer, g + 1, q], a[layer, g + 2, q], wires=q)
                    else:
                        getattr(qml, _GATES[name])(a[layer, g, q], wires=q)
                g += 3 if name == "u3" else 1
            for c, t in spec.pairs():
                (qml.CNOT if spec.entangler == "cnot" else qml.CZ)(wires=[c, t])
        return qml.probs(wires=range(spec.n_qubits))

    return circuit(angles)


def _random_specs(count: int, real: bool, seed: int) -> list[CircuitSpec]:
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(count):
        n = int(rng.integers(1, 13)) if i else 12  # always include the largest size
        layers = int(rng.integers(1, 4))
        if real:
            rot = ("ry",)
        else:
            rot = tuple(rng.choice(["rx", "ry", "rz", "u3"], size=int(rng.integers(1, 3))))
        ent = str(rng.choice(["cnot", "cz"] + (["none"] if i % 7 == 3 else [])))
        specs.append(CircuitSpec(n, layers, rot, ent, ring=bool(rng.integers(0, 2))))
    return specs


@pytest.mark.parametrize(
    "real, engine", [(True, "native"), (True, "torch"), (False, "torch")], ids=["real-native", "real-torch", "complex"]
)
def test_probabilities_and_gradients_match_pennylane(real, engine, native_engine):
    """>= 20 random circuits up to n = 12 per path: probabilities and gradients agree to 1e-6 in float64."""
    torch.manual_seed(0)
    for spec in _random_specs(20, real, seed=1 if real else 2):
        batch = 2
        angles = (torch.rand(batch, *spec.angle_shape, dtype=torch.float64) * 2 * math.pi).requires_grad_()
        weights = torch.randn(batch, 1 << spec.n_qubits, dtype=torch.float64)
        probs = simulate(angles, spec, engine=engine)
        (grad,) = torch.autograd.grad((probs * weights).sum(), angles)
        for b in range(batch):
            ref_angles = angles[b].detach().clone().requires_grad_()
            ref = pennylane_probs(spec, ref_angles)
            (ref_grad,) = torch.autograd.grad((ref * weights[b]).sum(), ref_angles)
            torch.testing.assert_close(probs[b].detach(), ref.detach(), atol=1e-6, rtol=0, msg=str(spec))
            torch.testing.assert_close(grad[b], ref_grad, atol=1e-6, rtol=0, msg=str(spec))


@pytest.mark.parametrize("backward", ["adjoint", "autograd", "checkpoint"])
@pytest.mark.parametrize("max_block", [1, 3, 5])
def test_backward_modes_and_block_sizes_agree(backward, max_block):
    spec = CircuitSpec(7, 3)
    angles = (torch.rand(5, *spec.angle_shape, dtype=torch.float64) * 6).requires_grad_()
    weights = torch.randn(5, 1 << 7, dtype=torch.float64)
    ref = simulate(angles, spec, backward="autograd", max_block=7)
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), angles)
    probs = simulate(angles, spec, backward=backward, max_block=max_block, engine="torch")
    (grad,) = torch.autograd.grad((probs * weights).sum(), angles)
    torch.testing.assert_close(probs, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_float32_agrees_with_float64(engine, native_engine):
    spec = CircuitSpec(10, 6)
    angles64 = torch.rand(16, *spec.angle_shape, dtype=torch.float64) * 6
    angles32 = angles64.float().requires_grad_()
    weights = torch.randn(16, 1 << 10, dtype=torch.float64)
    p32 = simulate(angles32, spec, engine=engine)
    (g32,) = torch.autograd.grad((p32 * weights.float()).sum(), angles32)
    angles64.requires_grad_()
    p64 = simulate(angles64, spec, engine=engine)
    (g64,) = torch.autograd.grad((p64 * weights).sum(), angles64)
    assert p32.dtype == torch.float32 and g32.dtype == torch.float32
    torch.testing.assert_close(p32.double(), p64.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(g32.double(), g64, atol=1e-4, rtol=1e-4)


def test_probabilities_are_normalised():
    spec = CircuitSpec(9, 4, ("rz", "ry", "rx"), "cz")
    probs = simulate(torch.rand(8, *spec.angle_shape) * 6, spec)
    torch.testing.assert_close(probs.sum(1), torch.ones(8), atol=1e-5, rtol=0)
    assert (probs >= 0).all()


def test_finite_shot_estimates_are_unbiased():
    """Mean of many shot estimates lies within 5 standard errors of the exact probabilities."""
    spec = CircuitSpec(4, 2)
    probs = simulate(torch.rand(1, *spec.angle_shape, dtype=torch.float64) * 6, spec)
    shots, repeats = 200, 400
    gen = torch.Generator().manual_seed(0)
    estimates = torch.stack([sample_probabilities(probs, shots, gen) for _ in range(repeats)])
    assert torch.allclose(estimates.sum(-1), torch.ones(repeats, 1, dtype=torch.float64))
    stderr = torch.sqrt(probs * (1 - probs) / (shots * repeats)).clamp_min(1e-4)
    z = (estimates.mean(0) - probs).abs() / stderr
    assert z.max() < 5, z.max()
    # finite-shot noise is real: single estimates differ from the exact values
    assert (estimates[0] - probs).abs().max() > 1e-3


def test_shot_gradients_pass_straight_through():
    spec = CircuitSpec(3, 2)
    angles = torch.rand(2, *spec.angle_shape, dtype=torch.float64).requires_grad_()
    weights = torch.randn(2, 8, dtype=torch.float64)
    (exact,) = torch.autograd.grad((simulate(angles, spec) * weights).sum(), angles)
    (shot,) = torch.autograd.grad((sample_probabilities(simulate(angles, spec), 10) * weights).sum(), angles)
    torch.testing.assert_close(shot, exact)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(n_qubits=0, n_layers=1), "n_qubits >= 1"),
        (dict(n_qubits=2, n_layers=1, rotations=("ry", "rw")), "unknown rotation"),
        (dict(n_qubits=2, n_layers=1, entangler="iswap"), "unknown entangler"),
    ],
)
def test_bad_specs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        CircuitSpec(**bad)


def test_bad_angle_shape_is_named():
    with pytest.raises(ValueError, match=r"angles must have shape \(C, 2, 1, 3\)"):
        simulate(torch.zeros(4, 2, 3), CircuitSpec(3, 2))


def pennylane_state(spec: CircuitSpec, angles: torch.Tensor) -> torch.Tensor:
    """Reference real amplitudes of one RY circuit with angles (L, 1, n), from PennyLane's state."""
    dev = qml.device("default.qubit", wires=spec.n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(a):
        for layer in range(spec.n_layers):
            for q in range(spec.n_qubits):
                qml.RY(a[layer, 0, q], wires=q)
            for c, t in spec.pairs():
                (qml.CNOT if spec.entangler == "cnot" else qml.CZ)(wires=[c, t])
        return qml.state()

    return circuit(angles).real


@pytest.mark.parametrize("engine, backward", [("native", "adjoint"), ("torch", "adjoint"), ("torch", "autograd"),
                                              ("torch", "checkpoint")])
@pytest.mark.parametrize("spec", [CircuitSpec(3, 2), CircuitSpec(6, 3, entangler="cz"), CircuitSpec(9, 2, ring=False)],
                         ids=["n3", "n6cz", "n9ladder"])
def test_amplitudes_and_their_gradients_match_pennylane(engine, backward, spec, native_engine):
    torch.manual_seed(0)
    angles = (torch.rand(3, *spec.angle_shape, dtype=torch.float64) * 2 * math.pi).requires_grad_()
    weights = torch.randn(3, 1 << spec.n_qubits, dtype=torch.float64)
    amps = simulate(angles, spec, backward=backward, engine=engine, output="amplitudes")
    (grad,) = torch.autograd.grad((amps * weights).sum(), angles)
    for c in range(3):
        ref_angles = angles[c].detach().clone().requires_grad_()
        ref = pennylane_state(spec, ref_angles)
        (ref_grad,) = torch.autograd.grad((ref * weights[c]).sum(), ref_angles)
        torch.testing.assert_close(amps[c].detach(), ref.detach(), atol=1e-10, rtol=0)
        torch.testing.assert_close(grad[c], ref_grad, atol=1e-9, rtol=0)


def test_amplitudes_are_refused_for_complex_circuits_and_unknown_outputs():
    with pytest.raises(ValueError, match="needs real"):
        simulate(torch.zeros(1, 1, 1, 2), CircuitSpec(2, 1, ("rx",)), output="amplitudes")
    with pytest.raises(ValueError, match="unknown output 'state'"):
        simulate(torch.zeros(1, 1, 1, 2), CircuitSpec(2, 1), output="state")
