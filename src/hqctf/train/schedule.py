"""Learning-rate schedule: linear warm-up, then cosine decay or halving on a validation plateau."""

from __future__ import annotations

import math

import torch


class WarmupSchedule:
    """Sets the optimiser's learning rate every step; its state is saved in checkpoints.

    Args:
        optimizer: the optimiser whose groups' ``lr`` is set (``initial_lr`` is recorded on first use).
        total_steps: steps of the whole run.
        warmup_steps: linear warm-up from lr/warmup_steps to lr.
        kind: ``cosine`` (to 0 at ``total_steps``) or ``plateau`` (halve after ``patience`` validations without
            improvement).
        patience: validations without improvement before halving (plateau).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, kind: str,
                 patience: int = 3) -> None:
        self.optimizer, self.total, self.warmup, self.kind, self.patience = optimizer, total_steps, warmup_steps, kind, patience
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.factor, self.best, self.bad = 1.0, -math.inf, 0

    def factor_at(self, step: int) -> float:
        """Multiplier of the initial learning rate at 0-based ``step``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "cosine":
            progress = (step - self.warmup) / max(1, self.total - self.warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.factor

    def set(self, step: int) -> float:
        """Apply the learning rate of ``step``; returns it (first group)."""
        factor = self.factor_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def observe(self, score: float) -> None:
        """Report a validation score (higher is better); plateau mode halves the rate after ``patience`` misses."""
        if score > self.best:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
            if self.kind == "plateau" and self.bad >= self.patience:
                self.factor, self.bad = self.factor * 0.5, 0

    def state_dict(self) -> dict:
        return {"factor": self.factor, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.factor, self.best, self.bad = state["factor"], state["best"], state["bad"]
