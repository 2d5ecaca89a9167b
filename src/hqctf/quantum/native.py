"""Bindings of the compiled circuit engine (``kernels.cpp``): real RY + CNOT/CZ circuits on the CPU.

Built and loaded through :mod:`hqctf.compiled`; circuits are split over the torch threads.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from .. import compiled
from ..compiled import NativeUnavailable

__all__ = ["NativeUnavailable", "backward", "forward", "library"]

SOURCE = Path(__file__).with_name("kernels.cpp")
KINDS = {"none": 0, "cnot": 1, "cz": 2, "cnot_ring": 3}
MIN_PARALLEL_WORK = 1 << 20  # amplitude updates below which one thread is faster


_P, _I64, _I32 = compiled.POINTER, compiled.INT64, compiled.INT32
SIGNATURES = (
    ("hq_forward", (_P, _I64, _I32, _I32, _I32, _P, _P, _P, _I32)),
    ("hq_backward", (_P, _I64, _I32, _I32, _I32, _P, _P, _P, _P, _I32)),
)


def library() -> ctypes.CDLL:
    """The loaded kernel library (compiled on first use); raises NativeUnavailable with the reason."""
    return compiled.load(SOURCE, SIGNATURES)


def forward(theta: torch.Tensor, kind: str, sign: torch.Tensor | None):
    """States and probabilities (C, 2^n) of circuits theta (C, L, n) on the CPU.

    ``kind``: ``none``, ``cnot`` (ladder), ``cnot_ring`` or ``cz`` (ladder or ring, given as ``sign`` (2^n,)).
    """
    theta = theta.contiguous()
    batch, n_layers, n = theta.shape
    states = torch.empty(batch, 1 << n, dtype=theta.dtype)
    probs = torch.empty_like(states)
    fn = getattr(library(), f"hq_forward_{compiled.suffix(theta.dtype)}")
    threads = compiled.threads(batch * n_layers * n << n, MIN_PARALLEL_WORK)
    compiled.call(fn, theta.data_ptr(), batch, n_layers, n, KINDS[kind], compiled.pointer(sign), states.data_ptr(),
                  probs.data_ptr(), threads)
    return states, probs


def backward(
    theta: torch.Tensor,
    kind: str,
    sign: torch.Tensor | None,
    states: torch.Tensor,
    grad_probs: torch.Tensor,
) -> torch.Tensor:
    """Gradient (C, L, n) of a loss with respect to theta, given its gradient w.r.t. the probabilities."""
    theta, grad_probs = theta.contiguous(), grad_probs.contiguous().to(theta.dtype)
    batch, n_layers, n = theta.shape
    grad = torch.empty_like(theta)
    fn = getattr(library(), f"hq_backward_{compiled.suffix(theta.dtype)}")
    threads = compiled.threads(batch * n_layers * n << n, MIN_PARALLEL_WORK)
    compiled.call(fn, theta.data_ptr(), batch, n_layers, n, KINDS[kind], compiled.pointer(sign), states.data_ptr(),
                  grad_probs.data_ptr(), grad.data_ptr(), threads)
    return grad
