"""Loose NIfTI image/label pairs, and `read_nifti_case`, the NIfTI case reader the nnU-Net and KiTS readers share."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from .case import Case, check_same_grid
from .errors import DataError
from .nifti import read_nifti
from .source import Source

#: A structure missing from a case's label map is ``"unknown"`` (not contoured) or ``"background"`` (truly absent).
Absent = Literal["unknown", "background"]


def check_absent(absent: str) -> None:
    """Raise `ValueError` unless ``absent`` is one of the `Absent` choices."""
    if absent not in ("unknown", "background"):
        raise ValueError(f"absent must be 'unknown' or 'background', got {absent!r}")


def nifti_case_id(path: str | Path) -> str:
    """Case id of an image file: its name without ``.nii.gz``/``.nii`` and a trailing ``_0000`` channel suffix."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.removesuffix("_0000")


def present_values(label: np.ndarray) -> set[int]:
    """Label values that occur in ``label`` (background included)."""
    return {int(v) for v in np.flatnonzero(np.bincount(label.ravel()))}


def read_label(label_path: str | Path, image_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a label map as uint8 (uint16 beyond 255).

    Args:
        label_path: the label NIfTI.
        image_path: the image it belongs to (named when the label file is missing).

    Returns:
        the label array and its affine.

    Raises:
        DataError: missing or unreadable file, non-integer or negative values, values above 65535.
    """
    label_path = Path(label_path)
    if not label_path.is_file():
        raise DataError(f"{label_path}: label file not found for image {Path(image_path).name}")
    data, affine = read_nifti(label_path)
    if not np.issubdtype(data.dtype, np.integer) and not np.all(np.isfinite(data) & (data == np.round(data))):
        raise DataError(f"{label_path}: label map has non-integer, NaN or inf values")
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise DataError(f"{label_path}: label values must lie in 0..65535, got {low}..{high}")
    return data.astype(np.uint8 if high <= 255 else np.uint16), affine


def stored_grid(path: Path, fix_affine: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> tuple[np.ndarray, tuple[int, ...]]:
    """The RAS affine (corrected by ``fix_affine``) and 3D shape of a NIfTI file as stored, from its header."""
    header = nib.load(path)
    affine = np.asarray(header.affine, dtype=np.float64)
    return (affine if fix_affine is None else fix_affine(affine)), tuple(int(n) for n in header.shape[:3])


def _xyz_order(case: Case) -> Case:
    """Transpose the arrays so that array axes 0, 1, 2 run closest to world X, Y, Z (no flips; affine adjusted)."""
    world_axis = nib.orientations.io_orientation(case.affine)[:, 0].astype(int)
    perm = np.argsort(world_axis)
    if np.array_equal(perm, np.arange(3)):
        return case
    case.image = np.ascontiguousarray(case.image.transpose(perm))
    if case.label is not None:
        case.label = np.ascontiguousarray(case.label.transpose(perm))
    affine = case.affine.copy()
    affine[:, :3] = case.affine[:, perm]
    case.affine = affine
    return case


def read_nifti_case(
    case_id: str,
    image_path: str | Path,
    label_path: str | Path | None,
    structures: dict[int, str],
    *,
    absent: Absent = "unknown",
    unknown: Iterable[int] | None = None,
    regions: dict[str, tuple[int, ...]] | None = None,
    fix_affine: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Case:
    """Read an image NIfTI (and its label map) into a validated `Case` of float32 HU.

    Array axes are reordered to run along world X, Y, Z (KiTS19 stores the superior-inferior axis first); the
    affine follows, so every voxel keeps its world position.

    Args:
        case_id: the case identifier.
        image_path: the CT image.
        label_path: its label map; None for an image without labels.
        structures: label value -> name, background excluded.
        absent: how structures whose value does not occur in the label map are treated (ignored when ``unknown``
            is given).
        unknown: label values not contoured in this case; None derives them from ``absent``.
        regions: region name -> label values.
        fix_affine: corrects the stored affines of image and label (`hqctf.data.openkbp.openkbp_affine`).

    Returns:
        the case, with ``sources`` = (image, label).

    Raises:
        DataError: one line naming the file: missing/corrupt file, shape or affine mismatch, stray label values,
            NaN/inf voxels.
    """
    image_path = Path(image_path)
    data, affine = read_nifti(image_path)
    label, label_affine, sources = None, None, (image_path,)
    if label_path is not None:
        label, label_affine = read_label(label_path, image_path)
        sources = (image_path, Path(label_path))
    if fix_affine is not None:
        affine = fix_affine(affine)
        label_affine = None if label_affine is None else fix_affine(label_affine)
    case = Case(
        case_id,
        np.asarray(data, dtype=np.float32),
        affine,
        label,
        structures=dict(structures),
        regions=dict(regions or {}),
        sources=sources,
    ).validate()
    if label is not None:
        check_same_grid(affine, label_affine, label_path)
        if unknown is None and absent == "unknown":
            unknown = set(structures) - present_values(label)
        case.unknown = frozenset(unknown or ())
    return _xyz_order(case)


class NiftiPairSource(Source):
    """Loose NIfTI files: each case is an image and an optional label map on the same grid.

    Args:
        pairs: (image, label) paths; label None for an image without labels. The case id is the image name without
            ``.nii``/``.nii.gz`` and a trailing ``_0000``.
        labels: label value -> structure name; None names the values found in the label maps ``label_<v>``
            (every label map is read once to find them).
        absent: a structure that does not occur in a case's label map is ``"unknown"`` (not contoured) or
            ``"background"`` (truly absent).
        root: folder shown as the source root; default the folder that holds all the images.
    """

    format = "nifti"

    def __init__(
        self,
        pairs: Sequence[tuple[str | Path, str | Path | None]],
        labels: dict[int, str] | None = None,
        absent: Absent = "unknown",
        *,
        root: str | Path | None = None,
    ) -> None:
        check_absent(absent)
        self._pairs: dict[str, tuple[Path, Path | None]] = {}
        for image, label in pairs:
            case_id = nifti_case_id(image)
            if case_id in self._pairs:
                raise DataError(f"{image}: case id {case_id!r} is also the id of {self._pairs[case_id][0]}")
            self._pairs[case_id] = (Path(image), None if label is None else Path(label))
        if not self._pairs:
            raise DataError(f"{root or 'NiftiPairSource'}: no NIfTI image/label pairs given")
        if root is None:
            root = os.path.commonpath([str(image.absolute().parent) for image, _ in self._pairs.values()])
        if labels is None:
            found = set().union(*(present_values(read_label(lab, img)[0]) for img, lab in self._pairs.values() if lab))
            labels = {v: f"label_{v}" for v in sorted(found - {0})}
        super().__init__(root, {v: n for v, n in labels.items() if v != 0})
        self.absent = absent

    @classmethod
    def from_folder(cls, root: str | Path, labels: dict[int, str] | None = None, absent: Absent = "unknown") -> NiftiPairSource:
        """Open ``root/images/<id>.nii.gz`` with ``root/labels/<id>.nii.gz`` (no ``labels/`` folder: images only).

        Args:
            root: the folder holding ``images/`` (and ``labels/``).
            labels, absent: as for the constructor.
        """
        root = Path(root)
        images_dir, labels_dir = root / "images", root / "labels"
        if not images_dir.is_dir():
            raise DataError(f"{images_dir}: images folder not found")
        images = sorted(p for p in images_dir.iterdir() if p.name.endswith((".nii.gz", ".nii")))
        if not images:
            raise DataError(f"{images_dir}: no .nii.gz or .nii images")
        pairs = [
            (image, labels_dir / (nifti_case_id(image) + (".nii.gz" if image.name.endswith(".gz") else ".nii")))
            if labels_dir.is_dir() else (image, None)
            for image in images
        ]
        return cls(pairs, labels, absent, root=root)

    def case_ids(self) -> list[str]:
        return sorted(self._pairs)

    def _pair(self, case_id: str) -> tuple[Path, Path | None]:
        if case_id not in self._pairs:
            raise DataError(f"{self.root}: no case {case_id!r}")
        return self._pairs[case_id]

    def files(self, case_id: str) -> list[Path]:
        return [p for p in self._pair(case_id) if p is not None]

    def file_grid(self, case_id: str) -> tuple[np.ndarray, tuple[int, ...]]:
        """Affine and shape of the case's image file as stored (before `read` reorders the axes)."""
        return stored_grid(self._pair(case_id)[0])

    def read(self, case_id: str) -> Case:
        image, label = self._pair(case_id)
        return read_nifti_case(case_id, image, label, self.labels, absent=self.absent)
