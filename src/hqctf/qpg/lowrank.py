"""Classical parameter-efficient baselines in the same family: LoRA updates and low-rank factorised weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from .targets import as_matrix, from_matrix, weight_rows


class LoRAGenerator(nn.Module):
    """W = W0 + (alpha / r) B @ A with W0 frozen, A Kaiming-initialised and B zero (peft's conv/linear LoRA).

    Args:
        weight: the classical weight W0 (kept as a buffer).
        out_dim: dimension of the weight that indexes output channels.
        r: rank of the update.
        alpha: scaling numerator.
    """

    def __init__(self, weight: torch.Tensor, out_dim: int, r: int, alpha: float):
        super().__init__()
        rows, per_row = weight_rows(tuple(weight.shape), out_dim)
        self.shape, self.out_dim, self.scaling = tuple(weight.shape), out_dim, alpha / r
        self.register_buffer("base", weight.detach().clone())
        self.lora_A = nn.Parameter(torch.empty(r, per_row))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(rows, r))

    def forward(self) -> torch.Tensor:
        return self.base + self.scaling * from_matrix(self.lora_B @ self.lora_A, self.shape, self.out_dim)


class LowRankGenerator(nn.Module):
    """W = U @ V of rank r, both factors trainable, initialised from the SVD of the classical init.

    The factors are rescaled so that W keeps the classical init's standard deviation.

    Args:
        weight: the classical initial weight.
        out_dim: dimension of the weight that indexes output channels.
        r: rank of the factorisation.
    """

    def __init__(self, weight: torch.Tensor, out_dim: int, r: int):
        super().__init__()
        self.shape, self.out_dim = tuple(weight.shape), out_dim
        matrix = as_matrix(weight.detach(), out_dim)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        r = min(r, s.numel())
        root = s[:r].sqrt()
        approx = (u[:, :r] * s[:r]) @ vh[:r]
        gain = (matrix.std() / approx.std().clamp_min(1e-12)).sqrt()
        self.U = nn.Parameter(u[:, :r] * root * gain)
        self.V = nn.Parameter(root[:, None] * vh[:r] * gain)

    def forward(self) -> torch.Tensor:
        return from_matrix(self.U @ self.V, self.shape, self.out_dim)
