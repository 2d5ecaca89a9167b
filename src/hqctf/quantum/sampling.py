"""Finite-shot estimates of basis-state probabilities."""

from __future__ import annotations

import torch


def sample_probabilities(probs: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace exact probabilities (C, 2^n) by the frequencies of ``shots`` measurements per circuit.

    The estimate is unbiased. Gradients pass straight through to the exact probabilities
    (straight-through estimator), so training with shots stays differentiable.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    with torch.no_grad():
        draws = torch.multinomial(probs.detach().clamp_min(0), shots, replacement=True, generator=generator)
        counts = torch.zeros_like(probs).scatter_add_(1, draws, torch.ones_like(draws, dtype=probs.dtype))
        freq = counts / shots
    return probs + (freq - probs).detach()
