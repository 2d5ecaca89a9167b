"""Reading and writing single NIfTI volumes, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import atomic_path
from .errors import DataError


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI volume (a trailing singleton 4th axis is dropped).

    Returns:
        the voxel array as stored (scaling applied when the header has one) and the 4x4 RAS affine.

    Raises:
        DataError: missing, truncated or corrupt file, or not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel, gzip and zlib raise many types for damaged files
        raise DataError(f"{path}: cannot read NIfTI, file truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data, np.asarray(img.affine, dtype=np.float64)


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path, suffix=".nii.gz" if path.name.endswith(".nii.gz") else path.suffix) as tmp:
        nib.save(img, tmp)
