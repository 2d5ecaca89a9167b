"""Whole-case prediction (whole slices or sliding windows), and validation metrics over cases."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from ..data.case import Case
from .metrics import case_metrics, mean_over_structures
from .models import logits_of


def slice_window(shape: Sequence[int], patch_size: Sequence[int], max_ratio: int = 4) -> tuple[int, ...]:
    """2D prediction window: the whole slice, padded to a multiple of 16, when it has at most ``max_ratio`` times
    the patch's pixels (one window per slice, no overlap recomputed); else the patch size (sliding windows)."""
    whole = tuple(max(p, -(-s // 16) * 16) for s, p in zip(shape, patch_size))
    return whole if math.prod(whole) <= max_ratio * math.prod(patch_size) else tuple(patch_size)


def _whole_slices(net: Callable[[torch.Tensor], torch.Tensor], slices: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """Logits of slices (B, 1, H, W) through one window each: padded symmetrically to ``window`` (as MONAI's
    sliding windows pad), predicted in one pass, cropped back."""
    (h, w), (wh, ww) = slices.shape[2:], window
    top, left = (wh - h) // 2, (ww - w) // 2
    logits = net(F.pad(slices, (left, ww - w - left, top, wh - h - top)))
    return logits[..., top:top + h, left:left + w]


@torch.inference_mode()
def predict_volume(
    model: nn.Module,
    image: np.ndarray,
    spatial_dims: int,
    patch_size: Sequence[int],
    overlap: float = 0.25,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
) -> np.ndarray:
    """Label map (X, Y, Z) of a preprocessed image (X, Y, Z), by arg-max of the logits.

    Args:
        model: network returning logits (or UNet++'s list of heads).
        image: preprocessed (z-scored) CT.
        spatial_dims: 2 predicts axial slices: whole slices, several per pass, where `slice_window` allows, else
            sliding windows over X, Y; 3 predicts the volume in sliding windows over X, Y, Z.
        patch_size: the training patch size: the window size in 3D and for slices too large to take whole.
        overlap: overlap of neighbouring sliding windows (predictions are blended with a constant weight).
        device: where the network runs.
        batch_size: windows per forward pass (whole slices: about as many pixels per pass).
    """
    was_training = model.training
    model.eval()

    def net(x: torch.Tensor) -> torch.Tensor:
        return logits_of(model(x))

    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    try:
        if spatial_dims == 3:
            logits = sliding_window_inference(volume[None, None].to(device), tuple(patch_size), batch_size, net,
                                              overlap=overlap)
            return logits[0].argmax(0).to(torch.uint8).cpu().numpy()
        window = slice_window(image.shape[:2], patch_size)
        whole = all(w >= s for w, s in zip(window, image.shape[:2]))
        batch = max(1, batch_size * math.prod(patch_size) // math.prod(window))
        out = np.zeros(image.shape, np.uint8)
        for start in range(0, image.shape[2], batch):
            slices = volume[:, :, start:start + batch].permute(2, 0, 1)[:, None].contiguous().to(device)
            logits = (_whole_slices(net, slices, window) if whole
                      else sliding_window_inference(slices, window, batch, net, overlap=overlap))
            out[:, :, start:start + batch] = logits.argmax(1).permute(1, 2, 0).to(torch.uint8).cpu().numpy()
        return out
    finally:
        model.train(was_training)


def validate_cases(
    model: nn.Module,
    cases: Sequence[Case],
    spatial_dims: int,
    patch_size: Sequence[int],
    overlap: float = 0.25,
    tolerance_mm: float = 2.0,
    device: torch.device | str = "cpu",
    on_case: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """Per-case, per-structure metrics (unknown structures NaN) and the predicted label maps, by case id;
    ``on_case(done, total)`` is called after each case (progress display)."""
    metrics, predictions = {}, {}
    for k, case in enumerate(cases, 1):
        pred = predict_volume(model, case.image, spatial_dims, patch_size, overlap, device)
        metrics[case.case_id] = case_metrics(pred, np.asarray(case.label), case.structures, case.spacing,
                                             case.unknown, tolerance_mm)
        predictions[case.case_id] = pred
        if on_case is not None:
            on_case(k, len(cases))
    return metrics, predictions


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Mean over cases of each case's structure mean (``dice``, ...) and of each structure (``dice/Liver``, ...)."""
    out: dict[str, float] = {}
    case_means = [mean_over_structures(m) for m in per_case.values()]
    for metric in case_means[0] if case_means else ():
        values = np.array([m[metric] for m in case_means], dtype=float)
        out[metric] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    structures = list(next(iter(per_case.values()), {}))
    for name in structures:
        for metric in next(iter(per_case.values()))[name]:
            values = np.array([per_case[c][name][metric] for c in per_case], dtype=float)
            out[f"{metric}/{name}"] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    return out
