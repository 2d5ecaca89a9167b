"""A circuit as a plain list of gates, for handing it to other quantum frameworks and to hardware."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from .circuits import CircuitSpec


class Gate(NamedTuple):
    """One gate: ``name`` (``rx``, ``ry``, ``rz``, ``u3``, ``cnot``, ``cz``), its angles and its qubits.

    Qubits are hqctf's: qubit 0 is the most significant bit of a basis index (PennyLane's order; Qiskit
    numbers the other way round).
    """

    name: str
    params: tuple[float, ...]
    wires: tuple[int, ...]


def gates(spec: CircuitSpec, angles: Sequence) -> list[Gate]:
    """The gates of one circuit in application order, from its angles (L, G, n) (nested lists or a tensor).

    Per layer: each rotation of ``spec.rotations`` on every qubit in turn (``u3`` takes three consecutive
    angles theta, phi, lambda), then the entangling ladder ``spec.pairs()``.
    """
    out: list[Gate] = []
    for layer in range(spec.n_layers):
        g = 0
        for name in spec.rotations:
            width = 3 if name == "u3" else 1
            for q in range(spec.n_qubits):
                out.append(Gate(name, tuple(float(angles[layer][g + k][q]) for k in range(width)), (q,)))
            g += width
        out.extend(Gate(spec.entangler, (), pair) for pair in spec.pairs())
    return out


def parameter_gates(spec: CircuitSpec) -> list[Gate]:
    """The gates of ``spec`` with each angle given as its index into the circuit's flattened angles.

    Index ``i`` is angle ``angles.reshape(-1)[i]`` of one circuit's (L, G, n) angles, so a back-end builds a
    circuit once and binds (or gathers) its parameters per circuit.
    """
    layers, per_qubit, n = spec.angle_shape
    index = [[[(layer * per_qubit + g) * n + q for q in range(n)] for g in range(per_qubit)] for layer in range(layers)]
    return [Gate(g.name, tuple(int(p) for p in g.params), g.wires) for g in gates(spec, index)]
