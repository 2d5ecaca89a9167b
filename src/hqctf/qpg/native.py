"""Bindings of the compiled mapping-network kernels (``kernels.cpp``): one hidden layer, tanh or identity, on the CPU.

Built and loaded through :mod:`hqctf.compiled`; basis states are split over the torch threads.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from .. import compiled

SOURCE = Path(__file__).with_name("kernels.cpp")
ACTIVATIONS = {"none": 0, "tanh": 1}
MIN_PARALLEL_WORK = 1 << 17  # hidden activations below which one thread is faster


_P, _I64, _I32 = compiled.POINTER, compiled.INT64, compiled.INT32
SIGNATURES = (
    ("hq_map_forward", (*[_P] * 5, _I64, _I64, _I32, _I32, _I32, _P, _I32)),
    ("hq_map_backward", (*[_P] * 5, _I64, _I64, _I32, _I32, _I32, *[_P] * 5, _I32)),
)


def library() -> ctypes.CDLL:
    """The loaded kernel library (compiled on first use); raises NativeUnavailable with the reason."""
    return compiled.load(SOURCE, SIGNATURES)


def _parts(channels: int, states: int, hidden: int) -> int:
    return compiled.threads(channels * states * hidden, MIN_PARALLEL_WORK)


def forward(q, a_t, p, w, b, activation: str) -> torch.Tensor:
    """out (C, S * K) = b + act(a[s] + q[c, s] p) @ w.T for q (C, S), a_t (H, S), p (H,), w (K, H), b (K,)."""
    (channels, states), (outputs, hidden) = q.shape, w.shape
    out = torch.empty(channels, states * outputs, dtype=q.dtype)
    fn = getattr(library(), f"hq_map_forward_{compiled.suffix(q.dtype)}")
    ins = (t.data_ptr() for t in (q, a_t, p, w, b))
    compiled.call(fn, *ins, channels, states, hidden, outputs, ACTIVATIONS[activation], out.data_ptr(),
                  _parts(channels, states, hidden))
    return out


def backward(q, a_t, p, w, grad, activation: str):
    """Gradients (q, a_t, p, w, b) of a loss whose gradient with respect to forward's output is ``grad``."""
    (channels, states), (outputs, hidden) = q.shape, w.shape
    parts = _parts(channels, states, hidden)
    grad_q, grad_a_t = torch.empty_like(q), torch.zeros_like(a_t)
    p_part = torch.empty(parts, hidden, dtype=q.dtype)
    w_part = torch.empty(parts, outputs, hidden, dtype=q.dtype)
    b_part = torch.empty(parts, outputs, dtype=q.dtype)
    fn = getattr(library(), f"hq_map_backward_{compiled.suffix(q.dtype)}")
    ins = (t.data_ptr() for t in (q, a_t, p, w, grad))
    outs = (t.data_ptr() for t in (grad_q, grad_a_t, p_part, w_part, b_part))
    compiled.call(fn, *ins, channels, states, hidden, outputs, ACTIVATIONS[activation], *outs, parts)
    return grad_q, grad_a_t, p_part.sum(0), w_part.sum(0), b_part.sum(0)
