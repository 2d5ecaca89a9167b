"""The ``qiskit`` back-end: the circuits on Qiskit Aer, exact or sampled, with an Aer noise model.

Qiskit numbers qubits little-endian, so hqctf's qubit q is Qiskit's qubit n-1-q, and Aer's basis-state index is
then hqctf's. Angle gradients come from the two-term parameter-shift rule, every shifted circuit bound into one
Aer run (qiskit-machine-learning's SamplerQNN takes only V2 samplers, which always sample, so it cannot give
exact probabilities).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .. import noise
from ..ansatz import parameter_gates
from ..circuits import CircuitSpec
from .base import BackendError, require

METHODS = ("automatic", "statevector", "density_matrix", "matrix_product_state")
_OPS = {"rx": "rx", "ry": "ry", "rz": "rz", "u3": "u", "cnot": "cx", "cz": "cz"}


@lru_cache(maxsize=None)
def _circuit(spec: CircuitSpec, sampled: bool) -> tuple[Any, Any]:
    """The parametrised circuit (measured when ``sampled``, else saving its exact probabilities) and its
    parameters, in the order of a circuit's flattened angles."""
    qiskit = require("qiskit", "qiskit")
    n = spec.n_qubits
    theta = qiskit.circuit.ParameterVector("theta", spec.n_params)
    circuit = qiskit.QuantumCircuit(n)
    for gate in parameter_gates(spec):
        getattr(circuit, _OPS[gate.name])(*(theta[i] for i in gate.params), *(n - 1 - q for q in gate.wires))
    if sampled:
        circuit.measure_all()
    else:
        circuit.save_probabilities()
    return circuit, theta


def _noise_model(n: int, readout: tuple[float, ...], depolarizing: float) -> Any:
    """Aer's model of the same noise: depolarising (PennyLane's p is Aer's 4p/3) on every qubit a gate acts on,
    and readout flips (qubit q of hqctf is Aer's n-1-q)."""
    aer_noise = require("qiskit_aer.noise", "qiskit")
    model = aer_noise.NoiseModel()
    if depolarizing:
        one = aer_noise.depolarizing_error(4 * depolarizing / 3, 1)
        model.add_all_qubit_quantum_error(one, ["rx", "ry", "rz", "u"])
        model.add_all_qubit_quantum_error(one.tensor(one), ["cx", "cz"])
    for q, e in enumerate(readout):
        if e:
            model.add_readout_error(aer_noise.ReadoutError([[1 - e, e], [e, 1 - e]]), [n - 1 - q])
    return model


@lru_cache(maxsize=None)
def _simulator(method: str | None, n: int, sampled: bool, readout: tuple[float, ...], depolarizing: float) -> Any:
    aer = require("qiskit_aer", "qiskit")
    if method is None:
        method = "density_matrix" if depolarizing and not sampled else "automatic"
    if method not in METHODS:
        raise BackendError(f"unknown Aer method {method!r} for backend qiskit (qpg.device); "
                           f"choose from {list(METHODS)}")
    if depolarizing and not sampled and method != "density_matrix":
        raise BackendError(f"exact probabilities with depolarising noise need Aer method density_matrix, "
                           f"not {method!r}")
    simulator = aer.AerSimulator(method=method, noise_model=_noise_model(n, readout if sampled else (), depolarizing))
    if simulator.num_qubits < n:
        raise BackendError(f"Aer method {method} simulates at most {simulator.num_qubits} qubits here; "
                           f"these circuits need {n}")
    return simulator


def _runner(spec: CircuitSpec, method: str | None, shots: int | None, readout: tuple[float, ...],
            depolarizing: float) -> Callable[[np.ndarray], np.ndarray]:
    """A function from angles (B, P) to probabilities (B, 2^n), all B circuits bound into one Aer run."""
    sampled = shots is not None
    simulator = _simulator(method, spec.n_qubits, sampled, readout, depolarizing)
    circuit, theta = _circuit(spec, sampled)

    def run(values: np.ndarray) -> np.ndarray:
        binds = [{p: values[:, i].tolist() for i, p in enumerate(theta)}]
        if not sampled:
            result = simulator.run(circuit, parameter_binds=binds).result()
            return np.stack([result.data(i)["probabilities"] for i in range(len(values))])
        seed = int(torch.randint(0, 2**31 - 1, ()).item())  # follows torch's seed
        result = simulator.run(circuit, parameter_binds=binds, shots=shots, seed_simulator=seed).result()
        counts = result.get_counts()
        out = np.zeros((len(values), 1 << spec.n_qubits))
        for row, found in enumerate(counts if isinstance(counts, list) else [counts]):
            for bits, count in found.items():
                out[row, int(bits, 2)] = count / shots
        return out

    return run


class _ShiftRule(torch.autograd.Function):
    """Probabilities from ``run`` with the two-term parameter-shift gradient: every angle drives one RX/RY/RZ or
    one of U3's three rotations, so dp/dθ = (p(θ + π/2) - p(θ - π/2)) / 2."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, run: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:  # noqa: D102
        ctx.run = run
        ctx.save_for_backward(flat)
        return torch.as_tensor(run(flat.detach().cpu().double().numpy())).to(flat)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        (flat,) = ctx.saved_tensors
        values = flat.detach().cpu().double().numpy()
        batch, count = values.shape
        shift = np.pi / 2 * np.eye(count)
        shifted = np.concatenate((values[:, None] + shift, values[:, None] - shift), 1).reshape(-1, count)
        out = ctx.run(shifted).reshape(batch, 2, count, -1)
        jacobian = torch.as_tensor((out[:, 0] - out[:, 1]) / 2).to(grad_out)  # (C, P, 2^n)
        return torch.einsum("cpk,ck->cp", jacobian, grad_out).to(flat), None


def probabilities(angles: torch.Tensor, spec: CircuitSpec, method: str | None, shots: int | None,
                  readout: float | Sequence[float], depolarizing: float) -> torch.Tensor:
    """Probabilities (C, 2^n) from Aer: exact (statevector, or density matrix with depolarising noise; readout
    error then applied exactly) or from ``shots`` measurements (readout error in the Aer noise model)."""
    require("qiskit_aer", "qiskit")  # also when a cached simulator would do: the error names the extra at once
    errors = tuple(noise.per_qubit(readout, spec.n_qubits))
    run = _runner(spec, method, shots, errors, float(depolarizing))
    probs = _ShiftRule.apply(angles.reshape(angles.shape[0], -1), run)
    return probs if shots is not None else noise.readout(probs, errors)
