"""A minimal 2D slice training loop and Dice evaluation shared by the classical and QPG runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch import nn


def batch_schedule(n_items: int, steps: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Indices of each step's batch: shuffled epochs, drawn once so every mode sees the same order."""
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, n_items)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order.extend(rng.permutation(n_items).tolist())
    return [np.asarray(order[i * batch_size : (i + 1) * batch_size]) for i in range(steps)]


def _logits(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """BasicUNetPlusPlus returns a list of heads; the first is the full-resolution prediction."""
    return output[0] if isinstance(output, (list, tuple)) else output


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    schedule: Sequence[np.ndarray],
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Run one optimiser step per batch of ``schedule`` with Dice + cross-entropy; returns the loss of each step."""
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    model.train()
    losses = []
    for step, idx in enumerate(schedule):
        index = torch.from_numpy(idx)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(_logits(model(images[index])), labels[index, None])
        loss.backward()
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step + 1}")
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
    return losses


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Arg-max label maps (N, H, W) for images (N, 1, H, W)."""
    model.eval()
    return torch.cat([_logits(model(images[i : i + batch_size])).argmax(1) for i in range(0, len(images), batch_size)])


def dice_per_class(prediction: torch.Tensor, label: torch.Tensor, n_classes: int) -> np.ndarray:
    """Dice of each foreground class over a stack of slices (one case); NaN where the class is absent in ``label``."""
    onehot = lambda x: nn.functional.one_hot(x.long(), n_classes).permute(3, 0, 1, 2)[None]  # noqa: E731
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    return metric(onehot(prediction), onehot(label))[0].numpy()
