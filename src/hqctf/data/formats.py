"""`open_source`: recognise a dataset's format from its files and open the matching reader."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from .errors import DataError
from .source import Source

FORMATS = ("nnunet", "kits", "dicom", "png", "nifti")


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _has_dicom(root: Path, limit: int = 2000) -> bool:
    for i, path in enumerate(p for p in root.rglob("*") if p.is_file()):
        if i >= limit:
            return False
        if path.suffix.lower() == ".dcm" or _is_dicom(path):
            return True
    return False


def detect_format(path: str | Path) -> str:
    """Name of the format of ``path`` (one of `FORMATS`); raises `DataError` when it is none of them."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: not found")
    if root.is_file():
        if root.name.endswith((".nii", ".nii.gz")):
            return "nifti"
        if _is_dicom(root) or root.suffix.lower() == ".dcm":
            raise DataError(f"{root}: a single DICOM file; give the folder holding the CT series (and its RTSTRUCT)")
        raise DataError(f"{root}: not a NIfTI file or a dataset folder")
    if (root / "dataset.json").is_file():
        return "nnunet"
    if any(root.glob("case_*/imaging.nii*")) or (root / "imaging.nii.gz").is_file():
        return "kits"
    if (root / "images").is_dir() and (root / "masks").is_dir() and any((root / "images").glob("*.png")):
        return "png"
    if (root / "images").is_dir() and any((root / "images").glob("*.nii*")):
        return "nifti"
    if _has_dicom(root):
        return "dicom"
    raise DataError(
        f"{root}: cannot tell the format (expected an nnU-Net raw folder with dataset.json, KiTS case_* folders, "
        "images/+masks/ PNGs, images/+labels/ NIfTI, or DICOM files)"
    )


def open_source(
    path: str | Path,
    format: str | None = None,
    labels: Mapping[int, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    missing: Literal["error", "unknown"] = "error",
    label_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Source:
    """Open the dataset at ``path`` with the reader for its format.

    Args:
        path: dataset folder, DICOM folder, or a single NIfTI image.
        format: one of `FORMATS`; None detects it from the files.
        labels: label value -> structure name; used by DICOM (RTSTRUCT/SEG names are matched to it) and loose
            NIfTI files. Other formats name their labels themselves.
        aliases: extra names or glob patterns per label name (DICOM).
        missing: DICOM only: a label without a matching ROI is an ``"error"`` or ``"unknown"`` for that case.
        label_file: label map for a single NIfTI image.
        cache_dir: the preprocessing cache; DICOM folder scans are indexed there (``dicom-index/``), so a
            later run over unchanged files reads no DICOM header.
    """
    root = Path(path)
    fmt = format or detect_format(root)
    if fmt == "nnunet":
        from .nnunet import NnUNetSource

        return NnUNetSource(root)
    if fmt == "kits":
        from .kits import KiTSSource

        return KiTSSource(root)
    if fmt == "png":
        from .png import PngSliceSource

        return PngSliceSource(root)
    if fmt == "dicom":
        from .dicom import DicomSource

        index = None
        if cache_dir is not None:
            resolved = root.resolve()
            index = Path(cache_dir) / "dicom-index" / f"{hashlib.sha256(str(resolved).encode()).hexdigest()[:16]}.json"
        return DicomSource(root, labels=dict(labels) if labels else None, aliases=aliases, missing=missing,
                           index_file=index)
    if fmt == "nifti":
        from .nifti_pairs import NiftiPairSource

        named = dict(labels) if labels else None
        if root.is_dir():
            return NiftiPairSource.from_folder(root, labels=named)
        return NiftiPairSource([(root, Path(label_file) if label_file else None)], labels=named)
    raise DataError(f"{root}: unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
