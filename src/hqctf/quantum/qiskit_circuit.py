"""One hqctf circuit as a Qiskit ``QuantumCircuit`` and OpenQASM 3, and measured counts back as probabilities.

Qiskit is optional (the ``quantum`` extra); `require_qiskit` names it when it is missing.

Qubit and bit order: hqctf qubit ``k`` (qubit 0 the most significant bit of a basis index) is Qiskit qubit
``n-1-k``, measured into classical bit ``n-1-k``. Qiskit writes a bitstring with classical bit 0 rightmost, so
the bitstring's character ``k`` from the left is hqctf qubit ``k``, and ``int(bitstring, 2)`` is the basis index
in hqctf and in Qiskit alike (a Qiskit ``Statevector.probabilities()`` is hqctf's probability vector as it is).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .ansatz import gates
from .circuits import CircuitSpec

EXTRA = 'pip install "hqctf[quantum]"'
BIT_ORDER = ("hqctf qubit k (qubit 0 = the most significant bit of a basis index) is OpenQASM qubit q[n-1-k], "
             "measured into bit meas[n-1-k]; Qiskit bitstrings put bit 0 rightmost, so character k from the left "
             "is hqctf qubit k and int(bitstring, 2) is the basis index in hqctf and Qiskit alike")
_METHODS = {"rx": "rx", "ry": "ry", "rz": "rz", "u3": "u", "cnot": "cx", "cz": "cz"}


def require_qiskit(*modules: str) -> None:
    """Raise ImportError with one line naming the ``quantum`` extra when Qiskit (or one of ``modules``) is missing."""
    for module in ("qiskit", *modules):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ImportError(f"{module} is not installed: {EXTRA}") from None


def to_qiskit(spec: CircuitSpec, angles: Sequence | torch.Tensor, measure: bool = True) -> Any:
    """The circuit of ``spec`` with one circuit's ``angles`` (L, G, n) as a ``QuantumCircuit`` (`BIT_ORDER`).

    With ``measure`` every qubit is measured at the end (``measure_all``: a barrier, then register ``meas``).
    """
    require_qiskit()
    from qiskit import QuantumCircuit

    n = spec.n_qubits
    circuit = QuantumCircuit(n)
    for gate in gates(spec, angles):
        getattr(circuit, _METHODS[gate.name])(*gate.params, *(n - 1 - q for q in gate.wires))
    if measure:
        circuit.measure_all()
    return circuit


def to_qasm3(spec: CircuitSpec, angles: Sequence | torch.Tensor) -> str:
    """One measured circuit as an OpenQASM 3 program (Qiskit's exporter)."""
    from qiskit import qasm3

    return qasm3.dumps(to_qiskit(spec, angles))


def gate_counts(spec: CircuitSpec) -> tuple[int, int, int]:
    """(single-qubit gates, two-qubit gates, depth) of one circuit, measurements excluded (Qiskit's count)."""
    circuit = to_qiskit(spec, torch.zeros(spec.angle_shape), measure=False)
    two = sum(1 for item in circuit.data if item.operation.num_qubits == 2)
    return len(circuit.data) - two, two, circuit.depth()


def probabilities(counts: Mapping[str, Any], n_qubits: int) -> torch.Tensor:
    """A circuit's basis-state probabilities (2^n,) float64 from ``{bitstring: count}`` in Qiskit's convention.

    Each value is divided by their total, so counts and exact probabilities both work; absent bitstrings are 0.

    Raises:
        ValueError: a bitstring not of n characters 0/1, a negative, non-finite or non-numeric value, a zero total.
    """
    out = torch.zeros(1 << n_qubits, dtype=torch.float64)
    for bits, value in counts.items():
        if len(bits) != n_qubits or set(bits) - {"0", "1"}:
            raise ValueError(f"bitstring {bits!r} is not {n_qubits} characters 0/1 (the circuit has {n_qubits} qubits)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"bitstring {bits!r}: count {value!r} is not a finite number >= 0")
        out[int(bits, 2)] += value
    total = out.sum()
    if total <= 0:
        raise ValueError("the counts sum to 0")
    return out / total
