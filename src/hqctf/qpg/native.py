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
    ("hq_map_forward", (_I64, _I64, *[_P] * 5, _I64, _I64, _I32, _I32, _I32, _P)),
    ("hq_map_backward", (_I64, _I64, *[_P] * 5, _I64, _I64, _I32, _I32, _I32, *[_P] * 5)),
)


def library() -> ctypes.CDLL:
    """The loaded kernel library (compiled on first use); raises NativeUnavailable with the reason."""
    return compiled.load(SOURCE, SIGNATURES)


def _parts(channels: int, states: int, hidden: int) -> list[tuple[int, int]]:
    return compiled.ranges(states, channels * states * hidden < MIN_PARALLEL_WORK)


def forward(q, a_t, p, w, b, activation: str) -> torch.Tensor:
    """out (C, S * K) = b + act(a[s] + q[c, s] p) @ w.T for q (C, S), a_t (H, S), p (H,), w (K, H), b (K,)."""
    (channels, states), (outputs, hidden) = q.shape, w.shape
    out = torch.empty(channels, states * outputs, dtype=q.dtype)
    fn = getattr(library(), f"hq_map_forward_{compiled.suffix(q.dtype)}")
    args = (q, a_t, p, w, b)
    tail = (channels, states, hidden, outputs, ACTIVATIONS[activation], out.data_ptr())
    compiled.run_all(
        fn, [(s0, s1, *(t.data_ptr() for t in args), *tail) for s0, s1 in _parts(channels, states, hidden)]
    )
    return out


def backward(q, a_t, p, w, grad, activation: str):
    """Gradients (q, a_t, p, w, b) of a loss whose gradient with respect to forward's output is ``grad``."""
    (channels, states), (outputs, hidden) = q.shape, w.shape
    parts = _parts(channels, states, hidden)
    grad_q, grad_a_t = torch.empty_like(q), torch.zeros_like(a_t)
    p_part = torch.empty(len(parts), hidden, dtype=q.dtype)
    w_part = torch.empty(len(parts), outputs, hidden, dtype=q.dtype)
    b_part = torch.empty(len(parts), outputs, dtype=q.dtype)
    fn = getattr(library(), f"hq_map_backward_{compiled.suffix(q.dtype)}")
    ins = tuple(t.data_ptr() for t in (q, a_t, p, w, grad))
    head = (channels, states, hidden, outputs, ACTIVATIONS[activation], grad_q.data_ptr(), grad_a_t.data_ptr())
    compiled.run_all(
        fn,
        [
            (s0, s1, *ins, *head, p_part[i].data_ptr(), w_part[i].data_ptr(), b_part[i].data_ptr())
            for i, (s0, s1) in enumerate(parts)
        ],
    )
    return grad_q, grad_a_t, p_part.sum(0), w_part.sum(0), b_part.sum(0)
