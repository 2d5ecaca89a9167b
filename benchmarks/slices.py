"""The fixed-slice training harness of benchmarks/qpg_diagnose.py: axial slices of the embedded OpenKBP sample held
in memory, a plain AdamW loop and per-organ Dice on the validation case's slices. It is the setting `hqctf demo`
used until 2026-12-03 (the demo now runs the real pipeline, `hqctf.train.Trainer`); the diagnostics of
docs/benchmarks.md were measured on it, and every diagnostic variant steps through the same fixed batches.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch import nn

from hqctf.data import DataError, list_cases, load_slices
from hqctf.data.nnunet import NnUNetSource
from hqctf.train.config import ModelConfig
from hqctf.train.models import build_network

DEFAULT_STEPS = 200
#: Centre crop of the 128 x 128 OpenKBP slices used for training: the organs lie inside the central 64 x 64
#: (all but 283 of 722,504 labelled voxels over the 203 cases), and a quarter of the pixels makes a step 3-4x cheaper.
DEFAULT_CROP = 64
FEATURES = (16, 16, 32, 64, 128, 16)
CLASSICAL_LR = 3e-3
#: QPG's learning rates per parameter group (`hqctf.qpg.diagnostics.parameter_group`): circuit angles ~7x the
#: classical rate, the shared mapping and gains 1/3 of it (chosen on the demo's validation case:
#: docs/benchmarks.md, benchmarks/qpg_diagnose.py); biases and norms train as in classical mode.
QPG_LRS = {"angles": 2e-2, "embedding": 2e-2, "mapping": 1e-3, "gain": 1e-3}
WEIGHT_DECAY = 1e-2  # AdamW's default, on classical parameters only


def build_model(n_classes: int, features: tuple[int, ...], seed: int) -> nn.Module:
    """The 2D UNet++ (`hqctf.train.models.build_network`), initialised from ``seed`` (identical for every variant)."""
    torch.manual_seed(seed)
    return build_network(ModelConfig(name="unetpp", spatial_dims=2, features=features), n_classes)


def _split(dataset_dir: Path, max_cases: int | None) -> tuple[list[str], list[str]]:
    cases = list_cases(dataset_dir)[:max_cases]
    if len(cases) < 2:
        raise DataError(f"{dataset_dir}: need at least 2 cases (training and validation), found {len(cases)}")
    n_val = max(1, len(cases) // 6)
    return cases[:-n_val], cases[-n_val:]


def centre_crop(x: torch.Tensor, crop: int | None) -> torch.Tensor:
    """The central ``crop`` x ``crop`` pixels of the last two axes (``x`` itself for None)."""
    if crop is None:
        return x
    h, w = x.shape[-2:]
    if not 0 < crop <= min(h, w):
        raise ValueError(f"crop must be in 1..{min(h, w)}, got {crop}")
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top : top + crop, left : left + crop].contiguous()


def _evaluate(model: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]], names: list[str]) -> tuple[dict, float, list]:
    """Per-organ Dice (mean over validation cases, None if the organ never occurs) and its mean over present organs."""
    preds = [predict(model, images) for images, _ in val]
    scores = np.stack([dice_per_class(p, labels, len(names)) for p, (_, labels) in zip(preds, val)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an organ absent from every validation case
        per_organ = np.nanmean(scores, axis=0)
    dice = {n: (None if np.isnan(d) else round(float(d), 4)) for n, d in zip(names[1:], per_organ)}
    present = [d for d in dice.values() if d is not None]
    return dice, (round(float(np.mean(present)), 4) if present else float("nan")), preds


@dataclass
class SliceData:
    """The harness's slices: training images/labels (N, 1, H, W) / (N, H, W), validation cases, label names, and the
    RAS affine of the first validation case's file (its slices are axial slices of that grid, for the overlay)."""

    train_cases: list[str]
    val_cases: list[str]
    x: torch.Tensor
    y: torch.Tensor
    val: list[tuple[torch.Tensor, torch.Tensor]]
    names: list[str]
    val_affine: np.ndarray

    @classmethod
    def load(cls, dataset: Path, seed: int, *, size: int = 128, crop: int | None = DEFAULT_CROP,
             max_cases: int | None = None, slices_per_case: int = 16) -> "SliceData":
        """``slices_per_case`` slices of each training case, three times as many of each validation case."""
        train_cases, val_cases = _split(dataset, max_cases)
        images, labels, names = load_slices(dataset, train_cases, slices_per_case, size, seed)
        val = []
        for case in val_cases:
            vi, vl, _ = load_slices(dataset, [case], 3 * slices_per_case, size, seed)
            val.append((centre_crop(torch.from_numpy(vi), crop), centre_crop(torch.from_numpy(vl), crop)))
        affine = NnUNetSource(dataset).file_grid(val_cases[0])[0]  # corrected for OpenKBP (hqctf.data.openkbp)
        return cls(train_cases, val_cases, centre_crop(torch.from_numpy(images), crop),
                   centre_crop(torch.from_numpy(labels), crop), val, names, affine)


def evaluate(model: nn.Module, data: SliceData) -> tuple[dict, float, list]:
    """Per-organ validation Dice, its mean over present organs, and the predictions."""
    return _evaluate(model, data.val, data.names)


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
