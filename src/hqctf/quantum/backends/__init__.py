"""Basis-state probabilities of a batch of circuits on a chosen back-end, with shots and noise.

``builtin`` is hqctf's own simulator (:mod:`hqctf.quantum.simulator`, with :mod:`hqctf.quantum.noise`),
``pennylane`` any PennyLane device by name, ``qiskit`` Qiskit Aer. Circuits come from
:func:`hqctf.quantum.ansatz.parameter_gates`; PennyLane and Qiskit are imported only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .. import noise
from ..circuits import CircuitSpec
from ..sampling import sample_probabilities
from ..simulator import simulate
from .base import BackendError

BACKENDS = ("builtin", "pennylane", "qiskit")

__all__ = ["BACKENDS", "BackendError", "check_training", "probabilities"]


def probabilities(angles: torch.Tensor, spec: CircuitSpec, backend: str = "builtin", device: Any = None,
                  shots: int | None = None, readout: float | Sequence[float] = 0.0, depolarizing: float = 0.0,
                  **builtin: Any) -> torch.Tensor:
    """Measured probabilities (C, 2^n) of circuits with angles (C, L, G, n), differentiable w.r.t. the angles.

    Args:
        angles: (C, L, G, n) rotation angles, G = ``spec.params_per_qubit``.
        spec: the circuit all C circuits share (qubit 0 is the most significant bit of a basis index).
        backend: ``builtin``, ``pennylane`` or ``qiskit``.
        device: PennyLane device name (default ``default.qubit``, ``default.mixed`` with depolarising noise) or
            a PennyLane device object; for qiskit an Aer method (default ``automatic``); unused by builtin.
        shots: measurements per circuit (None: exact probabilities).
        readout: per-qubit readout flip probability (one number for every qubit, or one per qubit); applied
            exactly (a tensor-product confusion matrix) before sampling shots, except on pennylane, where the
            device samples and the confusion matrix maps its frequencies (their expectation, not a second sample).
        depolarizing: probability of a depolarising channel on each qubit a gate acts on, after every gate.
        builtin: ``backward``, ``max_block``, ``engine`` of `hqctf.quantum.simulate` (builtin only).

    Gradients: builtin by its own backward (straight through the sampling with shots), pennylane by the device's
    method (backprop where it can, else parameter shift), qiskit by the parameter-shift rule through Aer.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")
    if shots is not None and shots < 1:
        raise BackendError(f"shots must be >= 1, got {shots}")
    try:
        noise.check_probability("readout_error", readout)
        noise.check_probability("depolarizing", depolarizing)
        noise.per_qubit(readout, spec.n_qubits)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    if backend == "qiskit":
        from . import qiskit

        return qiskit.probabilities(angles, spec, device, shots, readout, depolarizing)
    if backend == "pennylane":
        from . import pennylane

        probs = pennylane.probabilities(angles, spec, device, shots, depolarizing)
        return noise.readout(probs, readout)
    if depolarizing:
        try:
            probs = noise.depolarized_probabilities(angles, spec, depolarizing)
        except ValueError as exc:  # more qubits than the builtin noisy simulation takes
            raise BackendError(str(exc)) from None
    else:
        probs = simulate(angles, spec, **builtin)
    probs = noise.readout(probs, readout)
    return sample_probabilities(probs, shots) if shots else probs


def check_training(spec: CircuitSpec, backend: str, depolarizing: float) -> None:
    """Refuse (`BackendError`) circuits whose probabilities `probabilities` can evaluate but not differentiate:
    builtin depolarising noise with gradients simulates density matrices of at most
    `hqctf.quantum.noise.MAX_DENSITY_QUBITS` qubits."""
    if backend == "builtin" and depolarizing and spec.n_qubits > noise.MAX_DENSITY_QUBITS:
        raise BackendError(f"training with depolarising noise in the builtin engine simulates density matrices of at "
                           f"most {noise.MAX_DENSITY_QUBITS} qubits, a layer's circuits have {spec.n_qubits}; use "
                           "backend: pennylane with device: default.mixed (or backend: qiskit), or keep the builtin "
                           "engine's noise for evaluation")
