"""Bindings of the compiled Pauli-basis engine (``pauli.cpp``): depolarised circuits without gradients, on the CPU.

The circuit is planned here as passes over its Pauli coefficients: a qubit's one-qubit gates, each followed
by its depolarising channel, compose into one 3x3 matrix on its (X, Y, Z) coefficients, applied just before the
next two-qubit gate on that qubit; CNOT/CZ and their depolarising factors are a gather of the 16 coefficients
of the two qubits with a scale each. The kernel runs one circuit per thread.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from .. import compiled
from .ansatz import parameter_gates
from .circuits import CircuitSpec
from .gates import rotation_matrices

SOURCE = Path(__file__).with_name("pauli.cpp")
MIN_PARALLEL_WORK = 1 << 18  # coefficient updates below which one thread is faster

_P, _I64, _I32 = compiled.POINTER, compiled.INT64, compiled.INT32
SIGNATURES = (("hq_pauli", (_I64, _I32, _I32, _P, _I32, _P, _P, _P, _P, _I32)),)

_PAULIS = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]],
                       dtype=torch.complex128)  # I, X, Y, Z


def library() -> ctypes.CDLL:
    """The loaded kernel library (compiled on first use); raises NativeUnavailable with the reason."""
    return compiled.load(SOURCE, SIGNATURES)


def pauli_rotation(u: torch.Tensor) -> torch.Tensor:
    """(C, 3, 3) real matrices R of one-qubit unitaries u (C, 2, 2) on Pauli coefficients: with rho = sum_j c_j P_j,
    u rho u^dagger has coefficients R c (R_ij = Tr(P_i u P_j u^dagger) / 2)."""
    p = _PAULIS[1:].to(u.dtype)
    moved = torch.einsum("cab,jbd,ced->cjae", u, p, u.conj())
    return torch.einsum("iea,cjae->cij", p, moved).real / 2


@functools.cache
def pauli_map(name: str) -> tuple[tuple[int, int, int, int, float], ...]:
    """CNOT (control first) or CZ on two-qubit Pauli coefficients, a signed permutation: (i, j, k, m, sign) for
    U (P_i x P_j) U^dagger = sign P_k x P_m."""
    u = torch.eye(4, dtype=torch.complex128)
    u = u[[0, 1, 3, 2]] if name == "cnot" else torch.diag(torch.tensor([1, 1, 1, -1], dtype=torch.complex128))
    pairs = torch.stack([torch.kron(a, b) for a in _PAULIS for b in _PAULIS])  # (16, 4, 4)
    overlap = torch.einsum("kab,jba->jk", pairs, u @ pairs @ u.conj().T).real / 4  # (from, to)
    return tuple((src // 4, src % 4, int(dst) // 4, int(dst) % 4, float(overlap[src, dst]))
                 for src, dst in enumerate(overlap.abs().argmax(1)))


def _gather(name: str, swapped: bool, f: float) -> tuple[list[int], list[float]]:
    """Gather table of a two-qubit gate on sorted digits (lo, hi): out[k] = scale[k] * in[src[k]], k = 4 x_lo + x_hi;
    ``swapped``: its first wire is the higher digit. The depolarising factors of both qubits are in the scale."""
    kept = (1.0, f, f, f)
    src, scale = [0] * 16, [0.0] * 16
    for i, j, k, m, sign in pauli_map(name):  # (i, j) on (first, second) wire -> (k, m)
        dst = m * 4 + k if swapped else k * 4 + m
        src[dst] = j * 4 + i if swapped else i * 4 + j
        scale[dst] = sign * kept[k] * kept[m]
    return src, scale


def plan(flat: torch.Tensor, spec: CircuitSpec, p: float):
    """The passes (P, 5) int32, rotations (C, R, 3, 3), gather sources (G, 16) int32 and scales (G, 16) of circuits
    with angles ``flat`` (C, parameters) and depolarising probability ``p``; rows as ``pauli.cpp`` reads them."""
    dtype, cdtype = flat.dtype, torch.complex128 if flat.dtype == torch.float64 else torch.complex64
    f = 1 - 4 * p / 3  # what a depolarising channel leaves of an X, Y or Z coefficient
    pending: dict[int, torch.Tensor] = {}
    rotations: list[torch.Tensor] = []
    tables: dict[tuple[str, bool], int] = {}
    passes: list[tuple[int, int, int, int, int]] = []

    def slot(q: int) -> int:
        if q not in pending:
            return -1
        rotations.append(pending.pop(q))
        return len(rotations) - 1

    for gate in parameter_gates(spec):
        if len(gate.wires) == 1:
            (q,) = gate.wires
            params = flat[:, list(gate.params)]
            u = rotation_matrices(gate.name, params if gate.name == "u3" else params[:, 0], cdtype)
            r = (f * pauli_rotation(u)).to(dtype)  # the gate, then its depolarising channel
            pending[q] = r @ pending[q] if q in pending else r
            continue
        a, b = gate.wires
        table = tables.setdefault((gate.name, a > b), len(tables))
        lo, hi = sorted((a, b))
        passes.append((lo, hi, slot(lo), slot(hi), table))
    passes.extend((q, -1, slot(q), -1, -1) for q in sorted(pending))
    sources, scales = zip(*(_gather(name, swapped, f) for name, swapped in tables)) if tables else ((), ())
    rot = torch.stack(rotations, 1) if rotations else flat.new_zeros(flat.shape[0], 0, 3, 3)
    return (torch.tensor(passes, dtype=torch.int32).reshape(-1, 5), rot.contiguous(),
            torch.tensor(sources, dtype=torch.int32).reshape(-1, 16), torch.tensor(scales, dtype=dtype).reshape(-1, 16))


def probabilities(angles: torch.Tensor, spec: CircuitSpec, p: float) -> torch.Tensor:
    """Exact probabilities (C, 2^n) of depolarised circuits with angles (C, L, G, n) on the CPU, without gradients."""
    n, batch = spec.n_qubits, angles.shape[0]
    with torch.no_grad():
        passes, rot, src, scale = plan(angles.detach().reshape(batch, -1), spec, p)
    probs = torch.empty(batch, 1 << n, dtype=angles.dtype)
    fn = getattr(library(), f"hq_pauli_{compiled.suffix(angles.dtype)}")
    threads = min(compiled.threads(batch * len(passes) * 4 ** n, MIN_PARALLEL_WORK), max(batch, 1))
    compiled.call(fn, batch, n, len(passes), passes.data_ptr(), rot.shape[1], rot.data_ptr(), src.data_ptr(),
                  scale.data_ptr(), probs.data_ptr(), threads)
    return probs
