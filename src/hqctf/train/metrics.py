"""Per-structure segmentation metrics used in radiotherapy studies, computed with MONAI on label maps.

Conventions (also in docs): a structure that is unknown (not contoured) in a case gets NaN for every metric and is
left out of means; a structure absent from both the reference and the prediction gets NaN too (nothing to score);
when exactly one of them is empty, Dice and IoU are 0, surface Dice is 0 and HD95 is the diagonal of the image
extent in mm (the largest distance possible on that grid), so a missed structure is penalised, not skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import warnings

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice

METRICS = ("dice", "iou", "hd95", "surface_dice")


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    """(spatial) bool -> (1, 2, spatial) one-hot (background, structure) as MONAI expects."""
    fg = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    return torch.stack([1 - fg, fg])[None]


def structure_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 2.0
) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and surface Dice at ``tolerance_mm`` for one binary structure.

    Args:
        pred: predicted mask (bool, 2D or 3D).
        ref: reference mask, same shape.
        spacing: voxel size in mm per axis.
        tolerance_mm: surface Dice tolerance.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if n_pred == 0 and n_ref == 0:
        return dict.fromkeys(METRICS, float("nan"))
    if n_pred == 0 or n_ref == 0:
        diagonal = float(np.linalg.norm(np.asarray(pred.shape) * np.asarray(spacing, dtype=float)))
        return {"dice": 0.0, "iou": 0.0, "hd95": diagonal, "surface_dice": 0.0}
    overlap = int(np.logical_and(pred, ref).sum())
    p, r = _one_hot(pred), _one_hot(ref)
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        hd95 = compute_hausdorff_distance(p, r, percentile=95, spacing=spacing)
        nsd = compute_surface_dice(p, r, class_thresholds=[tolerance_mm], spacing=spacing)
    return {
        "dice": 2.0 * overlap / (n_pred + n_ref),
        "iou": overlap / (n_pred + n_ref - overlap),
        "hd95": float(hd95.item()),
        "surface_dice": float(nsd.item()),
    }


def case_metrics(
    pred: np.ndarray,
    label: np.ndarray,
    structures: Mapping[int, str],
    spacing: Sequence[float],
    unknown: Collection[int] = (),
    tolerance_mm: float = 2.0,
) -> dict[str, dict[str, float]]:
    """Metrics of every structure of one case: ``{structure name: {metric: value}}`` (NaN where not scored).

    Args:
        pred: predicted label map (spatial).
        label: reference label map, same shape.
        structures: label value -> name (background excluded).
        spacing: voxel size in mm.
        unknown: label values not contoured in this case; they get NaN.
        tolerance_mm: surface Dice tolerance.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    out = {}
    for value, name in sorted(structures.items()):
        if value in unknown:
            out[name] = dict.fromkeys(METRICS, float("nan"))
        else:
            out[name] = structure_metrics(pred == value, label == value, spacing, tolerance_mm)
    return out


def mean_over_structures(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """NaN-ignoring mean of each metric over structures (NaN when no structure was scored)."""
    means = {}
    for metric in METRICS:
        values = np.array([m[metric] for m in metrics.values()], dtype=float)
        means[metric] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    return means
