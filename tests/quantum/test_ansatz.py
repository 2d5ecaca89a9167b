"""The framework-neutral gate list describes exactly the circuit the simulator runs."""

import pytest
import torch

from hqctf.quantum import CircuitSpec, simulate
from hqctf.quantum.ansatz import gates

qml = pytest.importorskip("pennylane")

_OPS = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ, "u3": qml.U3, "cnot": qml.CNOT, "cz": qml.CZ}


@pytest.mark.parametrize(
    "spec",
    [
        CircuitSpec(3, 2),
        CircuitSpec(4, 2, rotations=("rx", "rz"), entangler="cz"),
        CircuitSpec(3, 1, rotations=("u3",), ring=False),
    ],
)
def test_gate_list_reproduces_the_simulator(spec):
    torch.manual_seed(0)
    angles = torch.rand(1, *spec.angle_shape, dtype=torch.float64) * 6
    dev = qml.device("default.qubit", wires=spec.n_qubits)

    @qml.qnode(dev)
    def circuit():
        for gate in gates(spec, angles[0]):
            _OPS[gate.name](*gate.params, wires=list(gate.wires))
        return qml.probs(wires=range(spec.n_qubits))

    ref = torch.as_tensor(circuit())
    assert torch.allclose(simulate(angles, spec, engine="torch")[0], ref, atol=1e-10)


def test_gate_count():
    spec = CircuitSpec(4, 3, rotations=("ry", "rz"))
    ops = gates(spec, torch.zeros(spec.angle_shape))
    assert len(ops) == 3 * (2 * 4 + 4)
    assert [g.wires for g in ops[8:12]] == [(0, 1), (1, 2), (2, 3), (3, 0)]
