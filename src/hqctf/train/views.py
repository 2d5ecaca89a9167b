"""The one display convention of every overlay: a radiological axial view, derived from the case's RAS affine.

Radiological: the patient seen from the feet, anterior up and the patient's right on the image's left. The volume
is reoriented with nibabel's orientation tools so that display rows run to posterior and columns to the patient's
left (axis codes ``P``, ``L``, ``S``), whatever order and direction the file stores its axes in. A volume without a
known orientation (PNG slices: identity affine, no spacing) is drawn as stored, without letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..data.case import Case
from .figures import overlay_png

#: Axis codes of the displayed (rows, columns, slices): rows run to posterior, columns to the patient's left.
RADIOLOGICAL = ("P", "L", "S")
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


@dataclass(frozen=True)
class AxialView:
    """One displayed axial slice: ``image`` (rows, columns) and the orientation letter at each edge (None: unknown)."""

    image: np.ndarray
    letters: dict[str, str] | None


def display_affine(case: Case) -> np.ndarray | None:
    """The affine to draw ``case`` with: its own, or None for windowed PNG slices, whose orientation is unknown."""
    return case.affine if case.intensity == "HU" else None


def axial_axis(affine: np.ndarray | None) -> int:
    """The array axis closest to the superior-inferior direction (the last one when the orientation is unknown)."""
    if affine is None:
        return 2
    return int(np.flatnonzero(nib.orientations.io_orientation(affine)[:, 0] == 2)[0])


def busiest_slice(label: np.ndarray, affine: np.ndarray | None) -> int:
    """Index, along `axial_axis`, of the axial slice with the most labelled voxels."""
    axis = axial_axis(affine)
    counts = np.moveaxis(np.asarray(label) > 0, axis, -1).reshape(-1, label.shape[axis]).sum(0)
    return int(np.argmax(counts))


def axial_view(volume: np.ndarray, affine: np.ndarray | None, index: int) -> AxialView:
    """Axial slice ``index`` (along `axial_axis`, in the array's own indexing) of a 3D ``volume`` in radiological view.

    Args:
        volume: a 3D array (image or label map) on the grid of ``affine``.
        affine: its 4x4 voxel-to-world RAS matrix; None draws ``volume[:, :, index].T`` as stored, without letters.
        index: the slice.
    """
    volume = np.asarray(volume)
    if affine is None:
        return AxialView(volume[:, :, index].T, None)
    axis = axial_axis(affine)
    chosen = np.take(volume, [index], axis=axis)  # keeps the axis, so the slice's orientation is still known
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                                nib.orientations.axcodes2ornt(RADIOLOGICAL))
    shown = nib.orientations.apply_orientation(chosen, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, chosen.shape)
    down, right, _ = nib.orientations.aff2axcodes(new_affine)
    letters = {"top": _OPPOSITE[down], "bottom": down, "left": _OPPOSITE[right], "right": right}
    return AxialView(np.ascontiguousarray(shown[:, :, 0]), letters)


def axial_overlay_png(image: np.ndarray, panels: Mapping[str, np.ndarray], affine: np.ndarray | None, index: int,
                      label_names: Sequence[str], title: str = "") -> bytes:
    """`overlay_png` of axial slice ``index`` of a 3D image and label maps on its grid, in radiological view with
    orientation letters on every panel (demo, validation and predict overlays alike)."""
    ct = axial_view(image, affine, index)
    shown = {name: axial_view(label, affine, index).image for name, label in panels.items()}
    return overlay_png(ct.image, shown, label_names, title, ct.letters)
