"""Noise for the built-in engine: exact readout error and exact depolarising noise.

Depolarising noise is simulated exactly in two ways: as density matrices with autograd (training, up to
`MAX_DENSITY_QUBITS`) and, without gradients (evaluation), in the Pauli basis, where a depolarising channel only
scales coefficients, a one-qubit gate mixes three of them and CNOT/CZ permute them: in torch with the circuits
innermost so every view is dense, or on the CPU in the compiled kernel of :mod:`.pauli` (one circuit per thread).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.checkpoint import checkpoint

from .. import compiled
from . import pauli
from .ansatz import Gate, parameter_gates
from .circuits import CircuitSpec
from .gates import rotation_matrices

MAX_DENSITY_QUBITS = 10  # a density matrix holds 4^n numbers per circuit
MAX_PAULI_QUBITS = 13  # 4^13 float32 coefficients: 256 MiB per circuit
PAULI_BATCH_BYTES = 1 << 30  # circuits simulated together in the Pauli basis: at most about this many bytes


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


def _rotate(view: torch.Tensor, r: torch.Tensor) -> None:
    """Coefficients (X, Y, Z) = view[:, 1:4] (A, 3, B, C) <- R (C, 3, 3) applied to them, in place."""
    nonzero = [(i, j) for i in range(3) for j in range(3) if torch.any(r[:, i, j] != 0)]
    if all(i == j for i, j in nonzero):  # rz-like: a scaling per coefficient
        for i, _ in nonzero:
            view[:, 1 + i].mul_(r[:, i, i])
        return
    old = view[:, 1:].clone()
    for i in range(3):
        terms = [j for row, j in nonzero if row == i]
        out = view[:, 1 + i]
        if not terms:
            out.zero_()
            continue
        torch.mul(old[:, terms[0]], r[:, i, terms[0]], out=out)
        for j in terms[1:]:
            out.addcmul_(old[:, j], r[:, i, j])


def _pauli_probabilities(angles: torch.Tensor, spec: CircuitSpec, p: float) -> torch.Tensor:
    """`depolarized_probabilities` without gradients, in the Pauli basis: real coefficients (4, ..., 4, C)."""
    n, batch = spec.n_qubits, angles.shape[0]
    flat = angles.reshape(batch, -1)
    dtype, cdtype = angles.dtype, torch.complex128 if angles.dtype == torch.float64 else torch.complex64
    f = 1 - 4 * p / 3  # what a depolarising channel leaves of an X, Y or Z coefficient
    kept = (1.0, f, f, f)
    coeff = torch.zeros(4 ** n, batch, dtype=dtype, device=angles.device)
    iz = [int(format(k, f"0{n}b").replace("1", "3"), 4) if n else 0 for k in range(1 << n)]  # I/Z-only strings
    coeff[iz] = 0.5 ** n  # |0><0| = prod (I + Z) / 2
    for gate in parameter_gates(spec):
        if len(gate.wires) == 1:
            (q,) = gate.wires
            params = flat[:, list(gate.params)]
            u = rotation_matrices(gate.name, params if gate.name == "u3" else params[:, 0], cdtype)
            _rotate(coeff.view(4 ** q, 4, -1, batch), (f * pauli.pauli_rotation(u)).to(dtype))  # then depolarised
        else:
            a, b = gate.wires
            lo, hi = sorted((a, b))
            view = coeff.view(4 ** lo, 4, 4 ** (hi - lo - 1), 4, -1, batch)
            new = torch.empty_like(view)
            for i, j, k, m, sign in pauli.pauli_map(gate.name):  # (i, j) on qubits (a, b) -> (k, m)
                src = view[:, i, :, j] if a < b else view[:, j, :, i]
                dst = new[:, k, :, m] if a < b else new[:, m, :, k]
                torch.mul(src, sign * kept[k] * kept[m], out=dst)  # then depolarised on both qubits
            coeff = new.view(4 ** n, batch)
    z = coeff[iz]  # I/Z coefficients, Z-string bits as a basis index (2^n, C)
    for q in range(n):  # p(x) = sum over Z-strings S of c_S (-1)^(x . S): a Walsh-Hadamard transform
        v = z.view(1 << q, 2, -1, batch)
        z = torch.stack((v[:, 0] + v[:, 1], v[:, 0] - v[:, 1]), 1).view(-1, batch)
    return z.T.clamp_min(0)


def depolarized_probabilities(angles: torch.Tensor, spec: CircuitSpec, p: float, engine: str = "auto") -> torch.Tensor:
    """Exact probabilities (C, 2^n) of circuits with a depolarising channel of probability ``p`` on every qubit
    a gate acts on, after each gate: with autograd a density-matrix simulation (checkpointed per layer; at most
    `MAX_DENSITY_QUBITS`), without it one in the Pauli basis (at most `MAX_PAULI_QUBITS`).

    Args:
        engine: for the Pauli basis, ``auto`` (the compiled CPU kernel, :mod:`.pauli`, for float32/64 CPU
            angles where it builds, else torch), ``native`` (insist on it) or ``torch``.
    """
    n = spec.n_qubits
    if not (angles.requires_grad and torch.is_grad_enabled()):
        if n > MAX_PAULI_QUBITS:
            raise ValueError(f"depolarising noise in the builtin engine simulates at most {MAX_PAULI_QUBITS} "
                             f"qubits, these circuits have {n}; use backend: qiskit")
        fits = angles.device.type == "cpu" and angles.dtype in (torch.float32, torch.float64)
        if compiled.use_native(engine, fits, pauli.library, "the native Pauli engine runs float32/64 on the CPU"):
            return pauli.probabilities(angles, spec, p)
        chunk = max(1, PAULI_BATCH_BYTES // (3 * 4 ** n * angles.element_size()))
        with torch.no_grad():
            return torch.cat([_pauli_probabilities(part, spec, p) for part in angles.split(chunk)])
    if n > MAX_DENSITY_QUBITS:
        raise ValueError(f"training with depolarising noise in the builtin engine simulates density matrices of "
                         f"at most {MAX_DENSITY_QUBITS} qubits, these circuits have {n}; use backend: pennylane "
                         "with device: default.mixed (or backend: qiskit)")
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
