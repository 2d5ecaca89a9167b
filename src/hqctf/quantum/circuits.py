"""Circuit description: a layered hardware-efficient ansatz shared by every simulator path."""

from __future__ import annotations

from dataclasses import dataclass

ROTATIONS = {"rx": 1, "ry": 1, "rz": 1, "u3": 3}
ENTANGLERS = ("cnot", "cz", "none")


@dataclass(frozen=True)
class CircuitSpec:
    """A layered ansatz: ``n_layers`` x [rotations on every qubit, then an entangling ladder].

    Starting from |0...0>, each layer applies the gates of ``rotations`` in order to every qubit,
    then two-qubit ``entangler`` gates on (0,1), (1,2), ..., (n-2, n-1), closed by (n-1, 0) when
    ``ring``. Qubit 0 is the most significant bit of a basis index (PennyLane's wire order).

    Args:
        n_qubits: number of qubits n; the state has 2**n amplitudes.
        n_layers: number of layers L.
        rotations: single-qubit gates per layer, from ``rx``, ``ry``, ``rz``, ``u3``.
        entangler: ``cnot``, ``cz`` or ``none``.
        ring: close the ladder into a ring (only for n > 2).
    """

    n_qubits: int
    n_layers: int
    rotations: tuple[str, ...] = ("ry",)
    entangler: str = "cnot"
    ring: bool = True

    def __post_init__(self) -> None:
        if self.n_qubits < 1 or self.n_layers < 1:
            raise ValueError(f"a circuit needs n_qubits >= 1 and n_layers >= 1, got {self.n_qubits}, {self.n_layers}")
        bad = [r for r in self.rotations if r not in ROTATIONS]
        if bad or not self.rotations:
            raise ValueError(f"unknown rotation(s) {bad or '[]'}; choose from {sorted(ROTATIONS)}")
        if self.entangler not in ENTANGLERS:
            raise ValueError(f"unknown entangler {self.entangler!r}; choose from {list(ENTANGLERS)}")

    @property
    def params_per_qubit(self) -> int:
        """Angles per qubit per layer."""
        return sum(ROTATIONS[r] for r in self.rotations)

    @property
    def n_params(self) -> int:
        """Angles per circuit."""
        return self.n_layers * self.params_per_qubit * self.n_qubits

    @property
    def angle_shape(self) -> tuple[int, int, int]:
        """Shape of one circuit's angles: (layers, params per qubit, qubits)."""
        return (self.n_layers, self.params_per_qubit, self.n_qubits)

    @property
    def is_real(self) -> bool:
        """True when every amplitude stays real (RY rotations with CNOT/CZ), enabling the real fast path."""
        return self.rotations == ("ry",)

    def pairs(self) -> list[tuple[int, int]]:
        """(control, target) pairs of the entangling ladder, in application order."""
        n = self.n_qubits
        if self.entangler == "none" or n < 2:
            return []
        pairs = [(q, q + 1) for q in range(n - 1)]
        if self.ring and n > 2:
            pairs.append((n - 1, 0))
        return pairs
