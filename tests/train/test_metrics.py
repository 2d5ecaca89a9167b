"""Metrics against an independent reference: surface points from scipy erosion, distances from a KD-tree."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial import cKDTree

from hqctf.train.metrics import case_metrics, mean_over_structures, structure_metrics


def _surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    edge = mask & ~binary_erosion(mask, structure=generate_binary_structure(mask.ndim, 1))
    return np.argwhere(edge) * np.asarray(spacing, float)


def _reference(pred, ref, spacing, tol):
    p, r = _surface_points(pred, spacing), _surface_points(ref, spacing)
    d_pr, _ = cKDTree(r).query(p)
    d_rp, _ = cKDTree(p).query(r)
    hd95 = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
    nsd = ((d_pr <= tol).sum() + (d_rp <= tol).sum()) / (len(d_pr) + len(d_rp))
    inter = (pred & ref).sum()
    return {"dice": 2 * inter / (pred.sum() + ref.sum()), "iou": inter / (pred | ref).sum(), "hd95": hd95, "surface_dice": nsd}


def _ball(shape, centre, radius, spacing):
    grid = np.indices(shape).T * np.asarray(spacing)
    return (np.linalg.norm(grid - np.asarray(centre) * np.asarray(spacing), axis=-1) <= radius).T


@pytest.mark.parametrize(
    "shape, spacing, tol",
    [((40, 36, 20), (0.8, 0.8, 2.5), 2.0), ((48, 48), (1.2, 0.7), 1.0), ((30, 30, 30), (1.0, 1.0, 1.0), 3.0)],
)
def test_agrees_with_kdtree_reference(shape, spacing, tol):
    rng = np.random.default_rng(0)
    centre = np.asarray(shape) / 2
    ref = _ball(shape, centre, 9.0, spacing)
    pred = _ball(shape, centre + rng.uniform(-2, 2, len(shape)), 8.0, spacing)
    pred[tuple(s // 8 for s in shape)] = True  # a stray false-positive voxel far from the structure
    got = structure_metrics(pred, ref, spacing, tol)
    want = _reference(pred, ref, spacing, tol)
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, rel=1e-5, abs=1e-5), metric


def test_unknown_and_empty_structures():
    label = np.zeros((10, 10, 4), np.uint8)
    label[2:5, 2:5] = 1
    pred = label.copy()
    pred[7:9, 7:9] = 2  # predicted where the reference has nothing
    metrics = case_metrics(pred, label, {1: "A", 2: "B", 3: "C", 4: "D"}, (1.0, 1.0, 2.0), unknown={3})
    assert metrics["A"]["dice"] == 1.0 and metrics["A"]["hd95"] == 0.0
    assert metrics["B"]["dice"] == 0.0 and metrics["B"]["hd95"] == pytest.approx(np.linalg.norm([10, 10, 8]))
    assert all(np.isnan(v) for v in metrics["C"].values())  # not contoured: not scored
    assert all(np.isnan(v) for v in metrics["D"].values())  # absent in both: nothing to score
    assert mean_over_structures(metrics)["dice"] == 0.5
