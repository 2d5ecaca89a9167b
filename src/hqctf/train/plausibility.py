"""Plausible structure sizes: each structure's range over a run's training labels, and the flags predictions get.

Rule (`flag`): a predicted structure is ``empty`` when it has no voxel, ``below_range`` when it is smaller than half
the smallest non-empty training label of that structure, ``above_range`` when it is larger than twice the largest;
otherwise it is not flagged. A structure that no training case contoured with a voxel has no range (only ``empty``
applies). Sizes are volumes in cc, or areas in pixels for PNG slices (no spacing). The training sizes are measured
on the preprocessed (possibly resampled) training cases.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.case import Case
from .config import ConfigError

RANGES_FILE = "volume_ranges.json"
LOW, HIGH = 0.5, 2.0
RULE = (f"flag 'empty' when no voxel is predicted; 'below_range' under {LOW} x the training minimum; "
        f"'above_range' over {HIGH} x the training maximum (minimum and maximum over non-empty training labels)")
#: volumes.csv's size column per unit
SIZE_COLUMN = {"cc": "volume_cc", "px": "area_px"}


def size_unit(case: Case) -> str:
    """``cc`` for CT with a physical grid, ``px`` for windowed PNG slices (identity affine, no spacing)."""
    return "cc" if case.intensity == "HU" else "px"


def structure_sizes(label: np.ndarray, affine: np.ndarray, structures: Mapping[int, str], unit: str) -> dict[str, float]:
    """Size of each structure of ``label`` (on the grid of ``affine``): volume in cc, or pixel count for ``px``."""
    per_voxel = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0 if unit == "cc" else 1.0
    counts = np.bincount(np.asarray(label).ravel().astype(np.int64), minlength=max(structures, default=0) + 1)
    return {name: round(float(counts[value]) * per_voxel, 3) for value, name in sorted(structures.items())}


def volume_ranges(cases: Sequence[Case]) -> dict[str, Any]:
    """Per structure: ``min`` and ``max`` size over the cases that contour it with a voxel, how many contour it
    (``contoured``) and how many of those are ``empty``; with the ``unit`` and the flag ``rule``."""
    units = {size_unit(c) for c in cases}
    if len(units) > 1:
        raise ValueError(f"training cases mix units {sorted(units)}")
    unit = units.pop() if units else "cc"
    sizes: dict[str, list[float]] = {}
    for case in cases:
        measured = structure_sizes(case.label, case.affine, case.structures, unit)
        for name in case.known.values():
            sizes.setdefault(name, []).append(measured[name])
    structures = {}
    for name, values in sizes.items():
        filled = [v for v in values if v > 0]
        structures[name] = {"min": min(filled) if filled else None, "max": max(filled) if filled else None,
                            "contoured": len(values), "empty": len(values) - len(filled)}
    return {"unit": unit, "rule": RULE, "cases": len(cases), "structures": structures}


def flag(size: float, entry: Mapping[str, Any] | None) -> str:
    """The flag of a predicted ``size`` against its structure's training range ``entry`` ('' when plausible)."""
    if size == 0:
        return "empty"
    if not entry or entry.get("min") is None:
        return ""
    if size < LOW * entry["min"]:
        return "below_range"
    if size > HIGH * entry["max"]:
        return "above_range"
    return ""


def flag_message(case_id: str, structure: str, size: float, unit: str, entry: Mapping[str, Any] | None) -> str:
    """One line explaining a flagged size (empty string when not flagged)."""
    why = flag(size, entry)
    if why == "empty":
        return f"{case_id}: {structure} empty (no voxel predicted)"
    if not why or entry is None:
        return ""
    low, high = LOW * entry["min"], HIGH * entry["max"]
    return (f"{case_id}: {structure} {size:g} {unit} is {why.replace('_', ' ')}: plausible {low:g}-{high:g} {unit} "
            f"(training labels {entry['min']:g}-{entry['max']:g} {unit})")


def read_ranges(run: str | Path) -> dict[str, Any] | None:
    """A run's `RANGES_FILE` (None for runs trained before it existed)."""
    path = Path(run) / RANGES_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the training volume ranges ({type(exc).__name__})") from None
