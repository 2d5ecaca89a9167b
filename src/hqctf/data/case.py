"""`Case`: one patient's CT volume and label map on the same grid, whatever format it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import DataError

#: Affines of an image and its label may differ by this much (mm) before they count as different grids.
AFFINE_TOLERANCE_MM = 1e-3


@dataclass
class Case:
    """A CT volume with its label map, on one voxel grid.

    Args:
        case_id: identifier, unique within a dataset (``"pt_4"``, ``"STS_008"``, ``"case_00012"``).
        image: float32 (X, Y, Z); Hounsfield units when ``intensity == "HU"``.
        affine: 4x4 voxel-to-world matrix in RAS+ millimetres (NIfTI convention).
        label: uint8 or uint16 (X, Y, Z) label map; 0 is background. None for an image without labels.
        structures: label value -> structure name, background excluded (``{1: "Brainstem"}``).
        unknown: label values not contoured in this case: neither foreground nor background is known, so they
            are left out of that structure's loss and metric.
        regions: optional overlapping regions as sets of label values (KiTS21: ``{"kidney_and_masses": (1, 2, 3)}``).
        patient_id: groups cases of one patient (e.g. several 2D slices) so splits never separate them.
        intensity: ``"HU"`` for calibrated CT, ``"windowed"`` for already windowed 8-bit images (PNG slices).
        sources: files the case was read from.
    """

    case_id: str
    image: np.ndarray
    affine: np.ndarray
    label: np.ndarray | None = None
    structures: dict[int, str] = field(default_factory=dict)
    unknown: frozenset[int] = frozenset()
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    patient_id: str = ""
    intensity: Literal["HU", "windowed"] = "HU"
    sources: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        self.patient_id = self.patient_id or self.case_id
        self.unknown = frozenset(int(v) for v in self.unknown)
        self.sources = tuple(Path(p) for p in self.sources)

    @property
    def where(self) -> str:
        """The file to name in error messages (the first source, else the case id)."""
        return str(self.sources[0]) if self.sources else self.case_id

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def known(self) -> dict[int, str]:
        """Structures contoured in this case (``structures`` minus ``unknown``)."""
        return {v: n for v, n in self.structures.items() if v not in self.unknown}

    def volumes_cc(self) -> dict[str, float]:
        """Volume of each structure in cubic centimetres (0.0 for unknown or absent structures)."""
        if self.label is None:
            return {}
        voxel_cc = float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0
        counts = np.bincount(self.label.ravel().astype(np.int64), minlength=max(self.structures, default=0) + 1)
        return {name: float(counts[v]) * voxel_cc for v, name in sorted(self.structures.items())}

    def validate(self) -> "Case":
        """Check shapes, finite values and label values; raise a one-line `DataError` naming the file. Returns self."""
        where = self.where
        if self.image.ndim != 3:
            raise DataError(f"{where}: expected a 3D image, got shape {self.image.shape}")
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-9:
            raise DataError(f"{where}: invalid affine (singular or not 4x4)")
        if not np.all(np.isfinite(self.image)):
            bad = int(np.size(self.image) - np.count_nonzero(np.isfinite(self.image)))
            raise DataError(f"{where}: image has {bad} NaN/inf voxels")
        if self.label is None:
            return self
        label_where = str(self.sources[-1]) if len(self.sources) > 1 else where
        if self.label.shape != self.image.shape:
            raise DataError(f"{label_where}: label shape {self.label.shape} does not match image shape {self.image.shape}")
        values = np.unique(self.label)
        allowed = {0, *self.structures}
        stray = [int(v) for v in values if int(v) not in allowed]
        if stray:
            raise DataError(f"{label_where}: label values {stray} are not among the structures {sorted(allowed)}")
        return self


def check_same_grid(image_affine: np.ndarray, label_affine: np.ndarray, label_path: str | Path) -> None:
    """Raise a `DataError` naming ``label_path`` when the two affines differ by more than `AFFINE_TOLERANCE_MM`."""
    diff = float(np.max(np.abs(np.asarray(image_affine) - np.asarray(label_affine))))
    if diff > AFFINE_TOLERANCE_MM:
        raise DataError(f"{label_path}: label affine differs from the image affine by {diff:.3g} mm")

