"""hqctf circuits as Qiskit circuits and OpenQASM 3: re-simulated by Qiskit Aer they give the built-in engine's
probabilities, and Aer's measured bitstrings land on hqctf's basis indices."""

import math

import pytest
import torch

from hqctf.quantum import CircuitSpec, simulate
from hqctf.quantum.qiskit_circuit import gate_counts, probabilities, require_qiskit, to_qasm3, to_qiskit

qasm3 = pytest.importorskip("qiskit.qasm3")
aer = pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_qasm3_import")

SPECS = [
    CircuitSpec(3, 2),
    CircuitSpec(4, 2, rotations=("rx", "rz"), entangler="cz"),
    CircuitSpec(3, 2, rotations=("u3",), ring=False),
    CircuitSpec(4, 3, rotations=("ry", "rz")),
]


def _aer_probabilities(program: str) -> dict[str, float]:
    """Qiskit's own {bitstring: probability} of an OpenQASM 3 program's state before its measurements."""
    circuit = qasm3.loads(program).remove_final_measurements(inplace=False)
    circuit.save_statevector()
    state = aer.AerSimulator(method="statevector").run(circuit).result().get_statevector()
    return state.probabilities_dict()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.n_qubits}q-{'-'.join(s.rotations)}-{s.entangler}")
def test_qasm3_resimulated_by_aer_gives_the_builtin_probabilities(spec):
    torch.manual_seed(0)
    angles = torch.rand(3, *spec.angle_shape, dtype=torch.float64) * 2 * math.pi
    expected = simulate(angles, spec, engine="torch")
    for c in range(3):
        program = to_qasm3(spec, angles[c])
        assert program.startswith("OPENQASM 3.0;") and "measure" in program
        got = probabilities(_aer_probabilities(program), spec.n_qubits)
        assert torch.allclose(got, expected[c], atol=1e-6), (got - expected[c]).abs().max()


def test_aer_counts_follow_the_documented_bit_order():
    # RY(pi) on hqctf qubit 0 alone (the most significant bit): the state is basis index 4 = 0b100
    spec = CircuitSpec(3, 1, entangler="none")
    angles = torch.zeros(spec.angle_shape)
    angles[0, 0, 0] = math.pi
    assert simulate(angles[None], spec, engine="torch")[0].argmax().item() == 4
    circuit = qasm3.loads(to_qasm3(spec, angles))
    counts = aer.AerSimulator().run(circuit, shots=50).result().get_counts()
    assert counts == {"100": 50}
    assert probabilities(counts, 3)[4] == 1.0


def test_sampled_counts_estimate_the_probabilities():
    spec = CircuitSpec(4, 2, rotations=("u3",), entangler="cz")
    torch.manual_seed(1)
    angles = torch.rand(*spec.angle_shape, dtype=torch.float64) * 2 * math.pi
    counts = aer.AerSimulator(seed_simulator=0).run(qasm3.loads(to_qasm3(spec, angles)), shots=200_000).result().get_counts()
    expected = simulate(angles[None], spec, engine="torch")[0]
    assert torch.allclose(probabilities(counts, 4), expected, atol=5e-3)


@pytest.mark.parametrize(
    ("spec", "single", "two", "depth"),
    [
        (CircuitSpec(3, 2), 6, 6, 8),  # per layer: 3 RY in parallel, then CNOT 01, 12, 20 one after another
        (CircuitSpec(3, 2, ring=False), 6, 4, 6),  # the next layer's RY on qubits 0 and 2 overlap the ladder
        (CircuitSpec(4, 2, rotations=("ry", "rz"), entangler="none"), 16, 0, 4),
        (CircuitSpec(2, 3, rotations=("u3",), entangler="cz"), 6, 3, 6),
    ],
)
def test_gate_counts_by_hand(spec, single, two, depth):
    assert gate_counts(spec) == (single, two, depth)


def test_probabilities_normalise_and_reject_bad_bitstrings():
    p = probabilities({"100": 3, "001": 1}, 3)
    assert p.dtype == torch.float64 and p[4] == 0.75 and p[1] == 0.25 and p.sum() == 1.0
    exact = probabilities({"0": 0.3, "1": 0.7}, 1)
    assert torch.allclose(exact, torch.tensor([0.3, 0.7], dtype=torch.float64), atol=1e-15)
    for counts, message in [({"10": 1}, "bitstring '10' is not 3 characters"),
                            ({"1x0": 1}, "bitstring '1x0' is not 3 characters"),
                            ({"100": -1}, "count -1 is not a finite number >= 0"),
                            ({"100": "5"}, "count '5' is not"),
                            ({"100": 0}, "the counts sum to 0")]:
        with pytest.raises(ValueError, match=message):
            probabilities(counts, 3)


def test_qiskit_circuit_qubits_are_reversed():
    circuit = to_qiskit(CircuitSpec(3, 1, ring=False), torch.zeros(1, 1, 3), measure=False)
    cx = [item for item in circuit.data if item.operation.name == "cx"]
    # hqctf CNOT(0, 1) is Qiskit CNOT(2, 1)
    assert [circuit.find_bit(cx[0].qubits[k]).index for k in (0, 1)] == [2, 1]


def test_a_missing_package_names_the_quantum_extra():
    with pytest.raises(ImportError, match=r'^hqctf_absent is not installed: pip install "hqctf\[quantum\]"$'):
        require_qiskit("hqctf_absent")
