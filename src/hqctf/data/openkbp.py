"""OpenKBP's voxel axes, which its converted NIfTI files do not record.

The challenge's CSV files give voxel sizes only, so the converted files (the shared ``Dataset001_OpenKBPOAR`` and the
embedded sample) carry a diagonal affine, which claims that array axis 0 runs to the patient's right, axis 1 to
anterior and axis 2 to superior. The arrays are stored as DICOM rows, columns and slices from the top of the head
instead: in every case the Mandible lies at low axis-0 indices and the SpinalCord at high ones (axis 0 runs to
posterior), the RightParotid at low axis-1 indices and the LeftParotid at high ones (axis 1 runs to the patient's
left), the Brainstem at low axis-2 indices and the Esophagus at high ones (axis 2 runs to inferior). These three
directions form a right-handed frame, like the diagonal one, so this is a rotation of the stated frame, not a mirror:
the labels are consistent, the affine is wrong. Read with the diagonal affine, reorientation to RAS turned every
case by 90 degrees in the axial plane and made left-right flips (which swap the parotids' sides) look like
anterior-posterior ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: What the array axes of the converted OpenKBP files run towards (nibabel axis codes).
OPENKBP_AXES = ("P", "L", "I")


def is_openkbp(meta: dict[str, Any]) -> bool:
    """Whether an nnU-Net ``dataset.json`` describes the converted OpenKBP data (its description names OpenKBP)."""
    return "openkbp" in str(meta.get("description", "")).lower()


def openkbp_affine(affine: np.ndarray) -> np.ndarray:
    """The true RAS affine of a converted OpenKBP file, given the diagonal affine it stores (any other affine, i.e.
    a file whose orientation was already set, is returned unchanged).

    Axis 0 runs to posterior (-Y), axis 1 to the patient's left (-X), axis 2 to inferior (-Z); voxel sizes and the
    origin are kept.
    """
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    sizes = np.diag(linear)
    if not (np.allclose(linear, np.diag(sizes)) and np.all(sizes > 0)):
        return affine
    fixed = affine.copy()
    fixed[:3, :3] = 0.0
    fixed[1, 0], fixed[0, 1], fixed[2, 2] = -sizes[0], -sizes[1], -sizes[2]
    return fixed
