"""Effective rank of weight matrices: how far a generated weight is from low rank."""

from __future__ import annotations

import torch

from .targets import as_matrix


def effective_rank(matrix: torch.Tensor) -> float:
    """exp of the Shannon entropy of the normalised singular values (Roy & Vetterli 2007); 1..min(shape)."""
    return spectrum_effective_rank(torch.linalg.svdvals(matrix.detach().double()))


def spectrum_effective_rank(singular_values: torch.Tensor | list[float]) -> float:
    """`effective_rank` from a matrix's singular values."""
    s = torch.as_tensor(singular_values, dtype=torch.float64)
    p = s / s.sum().clamp_min(1e-300)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def weight_effective_rank(weight: torch.Tensor, out_dim: int = 0) -> tuple[float, int]:
    """(effective rank, maximum rank) of a layer weight viewed as (output channels, weights per channel)."""
    matrix = as_matrix(weight, out_dim)
    return effective_rank(matrix), min(matrix.shape)
