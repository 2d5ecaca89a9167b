"""Cross-validation splits grouped by patient, in nnU-Net's ``splits_final.json`` layout.

A split file is a JSON list with one ``{"train": [...], "val": [...]}`` per fold (plus ``"test"`` when a test
set is held out of every fold); case ids sorted within each list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from .errors import DataError


def make_splits(case_ids: Sequence[str], patient_ids: Sequence[str] | None = None, n_folds: int = 5,
                test_fraction: float = 0.0, seed: int = 0) -> list[dict[str, list[str]]]:
    """Split cases into ``n_folds`` folds (and an optional test set) without separating a patient's cases.

    Patients are shuffled (from their sorted ids, so the input order does not matter). The test set is the
    shortest prefix of that order whose case count is nearest to ``test_fraction`` of all cases (at least one
    patient when ``test_fraction > 0``). The other patients go, largest first, to the fold with the fewest
    cases so far, which balances folds by case count.

    Args:
        case_ids: all cases (unique).
        patient_ids: the patient of each case, aligned with ``case_ids``; None: every case its own patient.
        n_folds: number of folds (>= 2, at most the number of patients outside the test set).
        test_fraction: share of cases held out of every fold, in [0, 1).
        seed: the shuffle; the same seed gives the same splits.

    Returns:
        one ``{"train", "val"}`` dict per fold (with ``"test"`` too when ``test_fraction > 0``); val sets are
        disjoint and cover every non-test case.

    Raises:
        ValueError: duplicate case ids, mismatched lengths, bad n_folds or test_fraction.
    """
    case_ids = [str(c) for c in case_ids]
    patients = case_ids if patient_ids is None else [str(p) for p in patient_ids]
    if len(set(case_ids)) != len(case_ids):
        raise ValueError("case_ids contain duplicates")
    if len(patients) != len(case_ids):
        raise ValueError(f"{len(patients)} patient_ids for {len(case_ids)} case_ids")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    groups: dict[str, list[str]] = {}
    for case_id, patient in zip(case_ids, patients):
        groups.setdefault(patient, []).append(case_id)
    rng = np.random.default_rng(seed)
    order = [sorted(groups)[i] for i in rng.permutation(len(groups))]
    test: list[str] = []
    if test_fraction > 0:
        counts = np.cumsum([len(groups[p]) for p in order])
        k = 1 + int(np.argmin(np.abs(counts - test_fraction * len(case_ids))))
        test, order = order[:k], order[k:]
    if not 2 <= n_folds <= len(order):
        raise ValueError(f"n_folds={n_folds} needs 2 <= n_folds <= {len(order)} (patients outside the test set)")
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for patient in sorted(order, key=lambda p: -len(groups[p])):  # stable: shuffled order among equal sizes
        min(folds, key=len).extend(groups[patient])
    test_cases = sorted(c for p in test for c in groups[p])
    splits = []
    for k, val in enumerate(folds):
        split = {"train": sorted(c for j, fold in enumerate(folds) if j != k for c in fold), "val": sorted(val)}
        if test_fraction > 0:
            split["test"] = test_cases
        splits.append(split)
    return splits


def _check(splits: object, where: str, case_ids: Sequence[str] | None) -> list[dict[str, list[str]]]:
    """Raise a one-line DataError naming ``where`` unless ``splits`` is a valid split list."""
    if not isinstance(splits, list) or not splits:
        raise DataError(f"{where}: expected a non-empty JSON list of folds")
    known = None if case_ids is None else set(case_ids)
    for k, fold in enumerate(splits):
        if not isinstance(fold, dict) or not {"train", "val"} <= set(fold) or set(fold) - {"train", "val", "test"}:
            raise DataError(f"{where}: fold {k} must be an object with 'train' and 'val' (and optionally 'test')")
        sets = {}
        for name, ids in fold.items():
            if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
                raise DataError(f"{where}: fold {k} '{name}' must be a list of case id strings")
            if known is not None and set(ids) - known:
                raise DataError(f"{where}: fold {k} '{name}' has unknown case ids {sorted(set(ids) - known)[:5]}")
            sets[name] = set(ids)
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = sets.get(a, set()) & sets.get(b, set())
            if both:
                raise DataError(f"{where}: fold {k} has cases in both '{a}' and '{b}': {sorted(both)[:5]}")
    return splits


def save_splits(path: str | Path, splits: list[dict[str, list[str]]]) -> None:
    """Write ``splits`` as JSON, atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    _check(splits, str(path), None)
    write_json_atomic(path, splits)


def load_splits(path: str | Path, case_ids: Sequence[str] | None = None) -> list[dict[str, list[str]]]:
    """Read a split file.

    Args:
        path: ``splits_final.json``-style file.
        case_ids: the dataset's cases; when given, ids outside them are an error.

    Raises:
        DataError: one line naming the file: missing, not JSON, wrong structure, unknown ids, overlapping sets.
    """
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    return _check(splits, str(path), case_ids)
