"""The ``pennylane`` back-end: the circuits as PennyLane tapes on any device, executed with the torch interface."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from ..ansatz import parameter_gates
from ..circuits import CircuitSpec
from .base import BackendError, require

_OPS = {"rx": "RX", "ry": "RY", "rz": "RZ", "u3": "U3", "cnot": "CNOT", "cz": "CZ"}


def _device_error(qml: Any) -> type[Exception]:
    return getattr(qml, "exceptions", qml).DeviceError  # qml.DeviceError before PennyLane 0.42


@lru_cache(maxsize=None)
def _named_device(name: str, n_qubits: int) -> Any:
    qml = require("pennylane", "pennylane")
    try:
        return qml.device(name, wires=n_qubits)
    except _device_error(qml):
        installed = ", ".join(sorted(qml.plugin_devices))
        raise BackendError(f"unknown PennyLane device {name!r} (its plugin may not be installed); installed: "
                           f"{installed}") from None
    except Exception as exc:  # a plugin's own refusal, e.g. more wires than its hardware has
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendError(f"PennyLane device {name!r} cannot be made with {n_qubits} wires: {first}") from None


def device_for(device: Any, n_qubits: int, depolarizing: float) -> Any:
    """The PennyLane device to run ``n_qubits``-qubit circuits on: ``device`` itself, or one made by name
    (None: ``default.qubit``, or ``default.mixed`` with depolarising noise); checks it has enough wires."""
    if device is None:
        device = "default.mixed" if depolarizing else "default.qubit"
    dev = _named_device(device, n_qubits) if isinstance(device, str) else device
    if dev.wires is not None and len(dev.wires) < n_qubits:
        raise BackendError(f"PennyLane device {dev.name} has {len(dev.wires)} wires; these circuits need {n_qubits}")
    return dev


def _ops(qml: Any, spec: CircuitSpec, params: torch.Tensor, wires: list, depolarizing: float) -> list:
    """One circuit's operations; ``params[i]`` is its angle i."""
    ops = []
    for gate in parameter_gates(spec):
        on = [wires[q] for q in gate.wires]
        ops.append(getattr(qml, _OPS[gate.name])(*(params[i] for i in gate.params), wires=on))
        if depolarizing:
            ops.extend(qml.DepolarizingChannel(depolarizing, wires=w) for w in on)
    return ops


def _diff_method(qml: Any, dev: Any, tape: Any) -> str:
    """Backprop, else adjoint, where the device offers it for this circuit (never with shots: samples have no
    derivative), else parameter shift (e.g. lightning.qubit, whose adjoint method does not return probabilities)."""
    if tape.shots:
        return "parameter-shift"
    for method in ("backprop", "adjoint"):
        if dev.supports_derivatives(qml.devices.ExecutionConfig(gradient_method=method), tape):
            return method
    return "parameter-shift"


def probabilities(angles: torch.Tensor, spec: CircuitSpec, device: Any, shots: int | None,
                  depolarizing: float) -> torch.Tensor:
    """Probabilities (C, 2^n) from a PennyLane device, one tape per circuit executed as one batch; gradients by
    backprop or adjoint where the device offers them, else by parameter shift (`_diff_method`). (No parameter
    broadcasting: PennyLane's parameter-shift does not differentiate broadcast tapes, and default.mixed's
    backprop gets broadcast U3 gradients wrong.)"""
    qml = require("pennylane", "pennylane")
    n = spec.n_qubits
    dev = device_for(device, n, depolarizing)
    wires = list(dev.wires)[:n] if dev.wires is not None else list(range(n))
    flat = angles.reshape(angles.shape[0], -1).to("cpu", torch.float64)
    measure = [qml.probs(wires=wires)]
    tapes = [qml.tape.QuantumScript(_ops(qml, spec, row, wires, depolarizing), measure, shots=shots) for row in flat]
    try:
        probs = torch.stack(list(qml.execute(tapes, dev, diff_method=_diff_method(qml, dev, tapes[0]))))
    except _device_error(qml) as exc:
        raise BackendError(f"PennyLane device {dev.name}: {str(exc).splitlines()[0]}"
                           + ("; depolarising noise needs a mixed-state device such as default.mixed"
                              if depolarizing else "")) from None
    return probs.to(angles.dtype).to(angles.device)
