"""Batched gate matrices, Kronecker-fused blocks and the entangling layer as one index map."""

from __future__ import annotations

from functools import lru_cache

import torch

from .circuits import CircuitSpec


def block_sizes(n_qubits: int, max_block: int) -> tuple[int, ...]:
    """Split n qubits into near-equal contiguous blocks of at most ``max_block`` qubits."""
    m = -(-n_qubits // max_block)
    base, extra = divmod(n_qubits, m)
    return tuple(base + 1 if i < extra else base for i in range(m))


def ry_matrices(theta: torch.Tensor) -> torch.Tensor:
    """RY(theta) for every entry of ``theta``: shape (..., 2, 2), real."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def rotation_matrices(name: str, angles: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """Matrices (..., 2, 2) of ``rx``/``ry``/``rz`` (angles (...,)) or ``u3`` (angles (..., 3))."""
    if name == "u3":
        theta, phi, delta = angles.unbind(-1)
        c, s = torch.cos(theta / 2).to(cdtype), torch.sin(theta / 2).to(cdtype)
        ep, ed = torch.polar(torch.ones_like(phi), phi).to(cdtype), torch.polar(torch.ones_like(delta), delta).to(cdtype)
        return torch.stack((torch.stack((c, -ed * s), -1), torch.stack((ep * s, ep * ed * c), -1)), -2)
    if name == "ry":
        return ry_matrices(angles).to(cdtype)
    c, s = torch.cos(angles / 2).to(cdtype), torch.sin(angles / 2).to(cdtype)
    if name == "rx":
        return torch.stack((torch.stack((c, -1j * s), -1), torch.stack((-1j * s, c), -1)), -2)
    zero = torch.zeros_like(c)
    return torch.stack((torch.stack((c - 1j * s, zero), -1), torch.stack((zero, c + 1j * s), -1)), -2)


def layer_matrices(spec: CircuitSpec, layer_angles: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """Product of one layer's rotations per qubit: angles (B, G, n) -> complex (B, n, 2, 2)."""
    out, g = None, 0
    for name in spec.rotations:
        if name == "u3":
            m = rotation_matrices(name, layer_angles[:, g : g + 3].permute(0, 2, 1), cdtype)
            g += 3
        else:
            m = rotation_matrices(name, layer_angles[:, g], cdtype)
            g += 1
        out = m if out is None else m @ out
    return out


def kron_blocks(mats: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Fuse per-qubit matrices (B, n, 2, 2) into one Kronecker product (B, 2^k, 2^k) per block."""
    blocks, q = [], 0
    batch = mats.shape[0]
    for k in sizes:
        out = mats[:, q]
        for j in range(q + 1, q + k):
            d = out.shape[-1]
            out = (out[:, :, None, :, None] * mats[:, j, None, :, None, :]).reshape(batch, 2 * d, 2 * d)
        blocks.append(out)
        q += k
    return blocks


def apply_front_block(psi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Apply u (B, d, d) to the leading log2(d) qubits of psi (B, 2^n) and rotate them to the back.

    One batched matmul reads the block as the leading index and writes it as the trailing one, so
    applying every block of a layer in turn returns the qubits to their original order with no
    transposing copies.
    """
    batch, total = psi.shape
    d = u.shape[-1]
    return torch.bmm(psi.reshape(batch, d, total // d).transpose(1, 2), u.transpose(1, 2)).reshape(batch, total)


def apply_blocks(psi: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """Apply a layer's Kronecker blocks (contiguous qubit groups, in order) to states psi (B, 2^n)."""
    for u in blocks:
        psi = apply_front_block(psi, u)
    return psi


def front_outer(lam: torch.Tensor, phi: torch.Tensor, d: int) -> torch.Tensor:
    """sum over all trailing qubits of lam[i] * phi[j] for the leading log2(d) qubits: (B, d, d)."""
    batch = lam.shape[0]
    return torch.bmm(lam.reshape(batch, d, -1), phi.reshape(batch, d, -1).transpose(1, 2))


@lru_cache(maxsize=None)
def ry_generator_selectors(k: int) -> torch.Tensor:
    """T (k, 2^k, 2^k) with dtheta_j = 0.5 * <T_j, outer(lam, phi)> for RY on block qubit j."""
    d = 1 << k
    t = torch.zeros(k, d, d, dtype=torch.float64)
    for j in range(k):
        bit = 1 << (k - 1 - j)
        for i in range(d):
            if i & bit:
                t[j, i, i ^ bit] = 1.0
            else:
                t[j, i, i ^ bit] = -1.0
    return t


@lru_cache(maxsize=None)
def _entangler_index(n: int, pairs: tuple[tuple[int, int], ...], kind: str) -> torch.Tensor:
    idx = torch.arange(1 << n)
    if kind == "cz":
        sign = torch.ones(1 << n, dtype=torch.float64)
        for a, b in pairs:
            both = ((idx >> (n - 1 - a)) & 1) & ((idx >> (n - 1 - b)) & 1)
            sign = sign * (1 - 2 * both)
        return sign
    dest = idx.clone()  # dest[i]: where basis state i ends up after the CNOT ladder
    for c, t in pairs:
        dest = dest ^ (((dest >> (n - 1 - c)) & 1) << (n - 1 - t))
    gather = torch.empty_like(dest)
    gather[dest] = idx  # new[j] = old[gather[j]]
    return gather


class Entangler:
    """The whole entangling ladder of one layer as a single gather (CNOT) or sign flip (CZ)."""

    def __init__(self, spec: CircuitSpec, device: torch.device, dtype: torch.dtype):
        pairs = tuple(spec.pairs())
        self.kind = spec.entangler if pairs else "none"
        self.n = spec.n_qubits
        if self.kind == "cnot":
            self.gather = _entangler_index(self.n, pairs, "cnot").to(device)
            self.scatter = torch.empty_like(self.gather)
            self.scatter[self.gather] = torch.arange(1 << self.n, device=device)
        elif self.kind == "cz":
            self.sign = _entangler_index(self.n, pairs, "cz").to(device=device, dtype=dtype)

    def _apply(self, psi: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "none":
            return psi
        shape = psi.shape
        view = psi.reshape(-1, 1 << self.n)
        view = view.index_select(1, index) if self.kind == "cnot" else view * self.sign
        return view.reshape(shape)

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        return self._apply(psi, getattr(self, "gather", None))

    def inverse(self, psi: torch.Tensor) -> torch.Tensor:
        return self._apply(psi, getattr(self, "scatter", None))
