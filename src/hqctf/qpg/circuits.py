"""A wrapped model's QPG circuits as hardware sees them: which layers run circuits, their description, the
generator state beside the angles, and what running them costs in circuit executions and shots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..quantum.qiskit_circuit import gate_counts
from .bank import generators
from .generator import QPGGenerator
from .targets import TargetError


def measured_layers(model: nn.Module) -> dict[str, QPGGenerator]:
    """Layer name -> generator of every QPG layer whose weights come from measured circuits, in model order.

    Raises:
        TargetError: the model has no such layer, or a layer reads amplitudes (simulator-only, not measurable).
    """
    found = {name: gen for name, gen in generators(model).items()
             if isinstance(gen, QPGGenerator) and gen.uses_circuit}
    if not found:
        raise TargetError("the model has no QPG circuit layers (mode classical, lora, lowrank, light or hyper?)")
    for name, gen in found.items():
        if gen.circuit_output != "probs":
            raise TargetError(f"{name}: transform {gen.config.transform!r} reads signed amplitudes, which no hardware "
                              "can measure")
    return found


def describe(gen: QPGGenerator) -> dict[str, Any]:
    """One layer's circuits as JSON-ready values: channels, qubits, layers, gates, the angles (C, L, G, n) and how
    the generator reads their probabilities."""
    spec = gen.spec
    return {"channels": gen.rows, "qubits": spec.n_qubits, "layers": spec.n_layers, "rotations": list(spec.rotations),
            "entangler": spec.entangler, "ring": spec.ring, "angle_shape": [gen.rows, *spec.angle_shape],
            "angles": gen.angles.detach().double().tolist(), "weight_shape": list(gen.shape),
            "basis_states_used": gen.n_states, "transform": gen.config.transform}


def generator_state(gen: QPGGenerator) -> dict[str, torch.Tensor]:
    """The generator's state without its angles: mapping network, gains, scale (and W0 or common row if any)."""
    return {key: value.detach().clone() for key, value in gen.state_dict().items() if key != "angles"}


@dataclass(frozen=True)
class LayerBudget:
    """The circuit executions one QPG layer needs; gate counts and depth are per circuit.

    Each training step runs every circuit once (forward) and, with trained angles, twice more per angle
    (parameter-shift gradient); inference needs only the forward executions.
    """

    layer: str
    circuits: int
    qubits: int
    angles: int
    single_qubit_gates: int
    two_qubit_gates: int
    depth: int
    trained: bool

    @property
    def forward_per_step(self) -> int:
        """Executions of one forward pass: one per circuit."""
        return self.circuits

    @property
    def gradient_per_step(self) -> int:
        """Parameter-shift executions of one angle gradient: 2 per angle per circuit (0 for untrained angles)."""
        return 2 * self.angles * self.circuits if self.trained else 0

    @property
    def per_step(self) -> int:
        """Executions of one training step."""
        return self.forward_per_step + self.gradient_per_step


def budget(model: nn.Module) -> list[LayerBudget]:
    """The `LayerBudget` of every measured QPG layer of ``model`` (`measured_layers`), in model order."""
    rows = []
    for name, gen in measured_layers(model).items():
        single, two, depth = gate_counts(gen.spec)
        rows.append(LayerBudget(name, gen.rows, gen.spec.n_qubits, gen.spec.n_params, single, two, depth,
                                gen.angles.requires_grad))
    return rows
