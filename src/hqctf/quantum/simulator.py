"""Batched differentiable statevector simulation of many independent small circuits.

All circuits in a call share one :class:`CircuitSpec`; their angles form one tensor of shape
(circuits, layers, params per qubit, qubits), and the states one tensor (circuits, 2^n). Each
layer's single-qubit gates are fused into a few Kronecker blocks applied as batched matmuls, and
the entangling ladder is one gather (CNOT) or sign flip (CZ).

Two paths:

* real (RY + CNOT/CZ): real amplitudes; the default ``adjoint`` backward stores no intermediate
  state and recomputes the state backwards alongside the adjoint vector (memory O(C 2^n)). On the
  CPU it runs in the compiled engine (:mod:`.native`), which keeps each circuit's state in cache
  for all its layers; elsewhere, or without a compiler, in torch.
* complex (any of RX/RY/RZ/U3): complex amplitudes, plain autograd, optionally checkpointed
  per layer.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.checkpoint import checkpoint

from .. import compiled
from . import native
from .circuits import CircuitSpec
from .gates import (
    Entangler,
    apply_blocks,
    apply_front_block,
    front_outer,
    block_sizes,
    kron_blocks,
    layer_matrices,
    ry_generator_selectors,
    ry_matrices,
)

BACKWARDS = ("adjoint", "autograd", "checkpoint")
OUTPUTS = ("probs", "amplitudes")


def _zero_state(batch: int, n: int, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    psi = torch.zeros(batch, 1 << n, dtype=dtype, device=like.device)
    psi[:, 0] = 1
    return psi


def _real_layer(psi: torch.Tensor, theta: torch.Tensor, sizes: tuple[int, ...], ent: Entangler) -> torch.Tensor:
    return ent.forward(apply_blocks(psi, kron_blocks(ry_matrices(theta), sizes)))


class _RealAdjoint(torch.autograd.Function):
    """RY + CNOT/CZ circuits: probabilities with an adjoint-method backward."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, sizes: tuple[int, ...], ent: Entangler, amplitudes: bool) -> torch.Tensor:  # noqa: D102
        batch, n_layers, n = theta.shape
        psi = _zero_state(batch, n, theta, theta.dtype)
        for layer in range(n_layers):
            psi = _real_layer(psi, theta[:, layer], sizes, ent)
        ctx.save_for_backward(theta, psi)
        ctx.sizes, ctx.ent, ctx.amplitudes = sizes, ent, amplitudes
        return psi.clone() if amplitudes else psi * psi

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        theta, psi = ctx.saved_tensors
        sizes, ent = ctx.sizes, ctx.ent
        batch, n_layers, n = theta.shape
        # state and adjoint travel together as rows (psi_0, lam_0, psi_1, lam_1, ...)
        lam = grad_out if ctx.amplitudes else 2 * grad_out * psi
        pair = torch.stack((psi, lam), 1).reshape(2 * batch, 1 << n)
        grads = torch.empty_like(theta)
        selectors = [ry_generator_selectors(k).to(theta) for k in sizes]
        for layer in reversed(range(n_layers)):
            pair = ent.inverse(pair)
            inverse = kron_blocks(ry_matrices(-theta[:, layer]), sizes)
            parts = []
            # blocks act on different qubits and are orthogonal, so undoing one leaves the
            # gradients of the others unchanged: take each block's gradient at the front, then undo it
            for k, sel, inv in zip(sizes, selectors, inverse):
                views = pair.reshape(batch, 2, 1 << n)
                outer = front_outer(views[:, 1], views[:, 0], 1 << k)
                parts.append(0.5 * torch.einsum("bij,qij->bq", outer, sel))
                pair = apply_front_block(pair, inv.repeat_interleave(2, 0))
            grads[:, layer] = torch.cat(parts, 1)
        return grads, None, None, None


class _RealNative(torch.autograd.Function):
    """RY + CNOT/CZ circuits in the compiled CPU engine, adjoint backward."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, kind: str, sign: torch.Tensor | None, amplitudes: bool) -> torch.Tensor:  # noqa: D102
        states, probs = native.forward(theta, kind, sign)
        ctx.save_for_backward(theta, states)
        ctx.kind, ctx.sign, ctx.amplitudes = kind, sign, amplitudes
        return states.clone() if amplitudes else probs

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        theta, states = ctx.saved_tensors
        if ctx.amplitudes:
            # the kernel seeds its adjoint with 2 grad_probs psi: hand it grad_psi / (2 psi), which gives
            # back grad_psi to rounding (amplitudes below 1e-30 pass no gradient)
            nonzero = states.abs() > 1e-30
            grad_out = torch.where(nonzero, grad_out / (2 * torch.where(nonzero, states, 1)), 0)
        return native.backward(theta, ctx.kind, ctx.sign, states, grad_out), None, None, None


@lru_cache(maxsize=64)
def _native_entangler(spec: CircuitSpec, dtype: torch.dtype) -> tuple[str, torch.Tensor | None]:
    pairs = spec.pairs()
    if not pairs:
        return "none", None
    if spec.entangler == "cz":
        return "cz", Entangler(spec, torch.device("cpu"), dtype).sign
    return ("cnot_ring" if len(pairs) == spec.n_qubits else "cnot"), None


def _use_native(engine: str, spec: CircuitSpec, angles: torch.Tensor, backward: str) -> bool:
    fits = spec.is_real and backward == "adjoint" and angles.device.type == "cpu"
    refusal = "the native engine runs RY-only circuits with the adjoint backward on the CPU"
    return compiled.use_native(engine, fits, native.library, refusal)


def _complex_layer(psi: torch.Tensor, angles: torch.Tensor, spec: CircuitSpec, sizes, ent: Entangler) -> torch.Tensor:
    mats = layer_matrices(spec, angles, psi.dtype)
    return ent.forward(apply_blocks(psi, kron_blocks(mats, sizes)))


def simulate(
    angles: torch.Tensor,
    spec: CircuitSpec,
    backward: str = "adjoint",
    max_block: int = 5,
    engine: str = "auto",
    output: str = "probs",
) -> torch.Tensor:
    """Exact basis-state probabilities (or real amplitudes) of a batch of circuits.

    Args:
        angles: (C, L, G, n) rotation angles, G = ``spec.params_per_qubit``; float32 or float64.
        spec: the circuit all C circuits share.
        backward: ``adjoint`` (real path; falls back to ``checkpoint`` on the complex path),
            ``autograd`` (store every intermediate state) or ``checkpoint`` (recompute per layer).
        max_block: most qubits fused into one Kronecker block (torch engine).
        engine: ``auto`` (the compiled CPU engine where it applies and builds, else torch),
            ``native`` (require it) or ``torch``.
        output: ``probs`` (measurable) or ``amplitudes`` (the signed real amplitudes of RY circuits: a
            simulator-only quantity, no hardware measures it).

    Returns:
        (C, 2^n) probabilities, each row summing to 1 (or amplitudes, each row of unit norm), with qubit 0
        as the most significant bit.
    """
    if backward not in BACKWARDS:
        raise ValueError(f"unknown backward {backward!r}; choose from {list(BACKWARDS)}")
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose from {list(OUTPUTS)}")
    amplitudes = output == "amplitudes"
    if amplitudes and not spec.is_real:
        raise ValueError(f"output='amplitudes' needs real (RY-only) circuits, got rotations {list(spec.rotations)}")
    expected = spec.angle_shape
    if angles.dim() != 4 or tuple(angles.shape[1:]) != expected:
        raise ValueError(f"angles must have shape (C, {', '.join(map(str, expected))}), got {tuple(angles.shape)}")
    if not angles.is_floating_point():
        raise TypeError(f"angles must be float32 or float64, got {angles.dtype}")
    if _use_native(engine, spec, angles, backward):
        return _RealNative.apply(angles[:, :, 0], *_native_entangler(spec, angles.dtype), amplitudes)
    sizes = block_sizes(spec.n_qubits, max_block)
    batch, n = angles.shape[0], spec.n_qubits
    if spec.is_real:
        theta = angles[:, :, 0]
        ent = Entangler(spec, angles.device, angles.dtype)
        if backward == "adjoint":
            return _RealAdjoint.apply(theta, sizes, ent, amplitudes)
        psi = _zero_state(batch, n, angles, angles.dtype)
        for layer in range(spec.n_layers):
            if backward == "checkpoint" and torch.is_grad_enabled():
                psi = checkpoint(_real_layer, psi, theta[:, layer], sizes, ent, use_reentrant=False)
            else:
                psi = _real_layer(psi, theta[:, layer], sizes, ent)
        return psi if amplitudes else psi * psi
    cdtype = torch.complex128 if angles.dtype == torch.float64 else torch.complex64
    ent = Entangler(spec, angles.device, cdtype)
    psi = _zero_state(batch, n, angles, cdtype)
    for layer in range(spec.n_layers):
        if backward != "autograd" and torch.is_grad_enabled():
            psi = checkpoint(_complex_layer, psi, angles[:, layer], spec, sizes, ent, use_reentrant=False)
        else:
            psi = _complex_layer(psi, angles[:, layer], spec, sizes, ent)
    return psi.real.square() + psi.imag.square()
