"""Noise for the built-in engine: exact readout error and an exact depolarising density-matrix simulation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.checkpoint import checkpoint

from .ansatz import Gate, parameter_gates
from .circuits import CircuitSpec
from .gates import rotation_matrices

MAX_DENSITY_QUBITS = 10  # a density matrix holds 4^n numbers per circuit


def check_probability(name: str, value: float | Sequence[float]) -> None:
    """Raise a one-line `ValueError` unless ``value`` (a number or a sequence of them) lies in [0, 1]."""
    values = list(value) if isinstance(value, Sequence) else [value]
    bad = [v for v in values if not 0.0 <= float(v) <= 1.0]
    if bad:
        raise ValueError(f"{name} must be a probability in [0, 1], got {bad[0]}")


def per_qubit(error: float | Sequence[float], n_qubits: int) -> list[float]:
    """Readout flip probabilities, one per qubit (a single number applies to every qubit)."""
    if not isinstance(error, Sequence):
        return [float(error)] * n_qubits
    if len(error) != n_qubits:
        raise ValueError(f"readout_error has {len(error)} entries, but the circuits have {n_qubits} qubits")
    return [float(e) for e in error]


def readout(probs: torch.Tensor, error: float | Sequence[float]) -> torch.Tensor:
    """Probabilities (C, 2^n) as read out by a measurement that flips qubit q with probability ``error[q]``.

    Exactly the tensor product of the per-qubit confusion matrices [[1-e, e], [e, 1-e]] applied to each row,
    one qubit at a time (qubit 0 is the most significant bit); differentiable.
    """
    n = probs.shape[1].bit_length() - 1
    x = probs.reshape(-1, *[2] * n)
    for q, e in enumerate(per_qubit(error, n)):
        if e:
            x = (1 - e) * x + e * x.flip(1 + q)
    return x.reshape(probs.shape)


def _apply_one(rho: torch.Tensor, u: torch.Tensor, axis: int) -> torch.Tensor:
    """Contract a batch of 2x2 matrices u (C, 2, 2) into index ``axis`` of rho (C, 2, ..., 2)."""
    return torch.einsum("cab,cb...->ca...", u, rho.movedim(axis, 1)).movedim(1, axis)


def _two_qubit(rho: torch.Tensor, name: str, a: int, b: int) -> torch.Tensor:
    """CNOT (control a, target b) or CZ on index axes a and b of rho."""
    x = rho.movedim((a, b), (1, 2))
    if name == "cnot":
        x = torch.stack((x[:, 0], x[:, 1].flip(1)), 1)
    else:
        x = torch.stack((x[:, 0], torch.stack((x[:, 1, 0], -x[:, 1, 1]), 1)), 1)
    return x.movedim((1, 2), (a, b))


def _depolarize(rho: torch.Tensor, q: int, n: int, p: float) -> torch.Tensor:
    """PennyLane's DepolarizingChannel(p) on qubit q: (1-p) rho + p/3 (X rho X + Y rho Y + Z rho Z).

    Equal to (1 - 4p/3) rho + (2p/3) I (x) Tr_q rho, the form used here.
    """
    x = rho.movedim((1 + q, 1 + n + q), (-2, -1))
    trace = x[..., 0, 0] + x[..., 1, 1]
    zero = torch.zeros_like(trace)
    mixed = torch.stack((torch.stack((trace, zero), -1), torch.stack((zero, trace), -1)), -2)
    return ((1 - 4 * p / 3) * x + (2 * p / 3) * mixed).movedim((-2, -1), (1 + q, 1 + n + q))


def _run_gates(rho: torch.Tensor, flat: torch.Tensor, ops: list[Gate], n: int, p: float) -> torch.Tensor:
    for gate in ops:
        if len(gate.wires) == 1:
            (q,) = gate.wires
            params = flat[:, list(gate.params)]
            u = rotation_matrices(gate.name, params if gate.name == "u3" else params[:, 0], rho.dtype)
            rho = _apply_one(_apply_one(rho, u, 1 + q), u.conj(), 1 + n + q)
        else:
            a, b = gate.wires
            rho = _two_qubit(_two_qubit(rho, gate.name, 1 + a, 1 + b), gate.name, 1 + n + a, 1 + n + b)
        for q in gate.wires:
            rho = _depolarize(rho, q, n, p)
    return rho


def depolarized_probabilities(angles: torch.Tensor, spec: CircuitSpec, p: float) -> torch.Tensor:
    """Exact probabilities (C, 2^n) of circuits with a depolarising channel of probability ``p`` on every qubit
    a gate acts on, after each gate (a density-matrix simulation, checkpointed per layer; autograd)."""
    n = spec.n_qubits
    if n > MAX_DENSITY_QUBITS:
        raise ValueError(f"depolarising noise in the builtin engine simulates density matrices of at most "
                         f"{MAX_DENSITY_QUBITS} qubits, these circuits have {n}; use backend: pennylane with "
                         "device: default.mixed (or backend: qiskit)")
    batch = angles.shape[0]
    flat = angles.reshape(batch, -1)
    cdtype = torch.complex128 if angles.dtype == torch.float64 else torch.complex64
    rho = torch.zeros(batch, 1 << (2 * n), dtype=cdtype, device=angles.device)
    rho[:, 0] = 1
    rho = rho.reshape(batch, *[2] * (2 * n))
    ops = parameter_gates(spec)
    per_layer = len(ops) // spec.n_layers
    for layer in range(spec.n_layers):
        step = ops[layer * per_layer : (layer + 1) * per_layer]
        if flat.requires_grad:
            rho = checkpoint(_run_gates, rho, flat, step, n, p, use_reentrant=False)
        else:
            rho = _run_gates(rho, flat, step, n, p)
    diagonal = rho.reshape(batch, 1 << n, 1 << n).diagonal(dim1=1, dim2=2)
    return diagonal.real.to(angles.dtype)
