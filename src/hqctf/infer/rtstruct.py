"""`write_rtstruct`: a predicted label map on a CT series' grid as a DICOM RT Structure Set for planning systems.

Each structure is contoured slice by slice between voxel centres (contourpy, at `CONTOUR_LEVEL`), so rasterising
the contours with voxel-centre inclusion gives the mask back. Holes are written as keyholes by default: each
connected region is one CLOSED_PLANAR contour, its holes joined to the outer boundary by zero-width cuts, which
readers that OR contours (plastimatch's default, planning systems that union them) and readers that XOR them
(even-odd, as `hqctf.data.dicom`) fill alike. ``holes="nested"`` writes every hole as a contour of its own instead,
right only for even-odd readers.
"""

from __future__ import annotations

import copy
import datetime
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import contourpy
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ImplicitVRLittleEndian, generate_uid

from .. import __version__
from ..atomic import atomic_path
from ..data.dicom import image_slice, read_header, Slice, sorted_slices

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: Referenced SOP Class of the RT Referenced Study item (Detached Study Management, as MIM and rt-utils write it).
STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"
#: Iso-level of the 0/1 mask that the contours follow. Just above 0.5, a contour runs 0.49 voxel from the boundary
#: voxel centres and 0.51 from the background ones, so readers that round vertices to the nearest voxel and fill
#: boundary included (OpenCV ``fillPoly``, as in rt-utils) get the mask back too; at 0.5 they get up to one voxel
#: layer more. The enclosed area shrinks by 0.01 voxel per boundary voxel.
CONTOUR_LEVEL = 0.51
#: How holes are written: joined to their region's outer boundary by a cut, or as contours of their own.
Holes = Literal["keyhole", "nested"]
HOLES: tuple[str, ...] = get_args(Holes)
#: Contour coordinates are written in mm with this many decimals.
CONTOUR_DECIMALS = 3
#: Longest value of the DS (decimal string) VR.
DS_MAX_CHARS = 16
#: SeriesNumber of the written RTSTRUCT series.
SERIES_NUMBER = 9001
#: Interpreted type of a structure whose name starts with one of these (case-insensitive); others are ORGAN.
TARGET_TYPES = ("GTV", "CTV", "PTV")
#: Default ROI display colours, by label value (cycled): a fixed set of distinct colours.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
)

_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                  "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
                  "FrameOfReferenceUID", "PositionReferenceIndicator")


def write_rtstruct(
    label: np.ndarray,
    ct_files: Sequence[Path],
    structures: dict[int, str],
    out_path: Path,
    *,
    series_description: str = "hqctf prediction",
    colours: dict[int, tuple[int, int, int]] | None = None,
    interpreted_types: dict[int, str] | None = None,
    holes: Holes = "keyhole",
) -> list[str]:
    """Write ``label`` as an RTSTRUCT referencing the CT series ``ct_files``; returns the names of empty structures.

    Args:
        label: integer (X, Y, Z) label map on the CT grid, as `DicomSource` reads it: X = columns, Y = rows,
            Z = slices sorted along the slice normal; 0 is background.
        ct_files: every image file of the CT series.
        structures: label value -> ROI name (TG-263); each non-zero value in ``label`` must be listed. The values
            become the ROI numbers; a structure absent from ``label`` is still written, without contours.
        out_path: the RTSTRUCT file, written atomically.
        series_description: SeriesDescription of the new RTSTRUCT series.
        colours: label value -> ROI display colour (RGB, 0..255); the others come from `PALETTE`.
        interpreted_types: label value -> RT ROI Interpreted Type; the others are GTV/CTV/PTV when the name starts
            with that (case-insensitive), else ORGAN.
        holes: ``keyhole``: one contour per connected region, each hole joined to it by a cut (read alike by
            every reader); ``nested``: outer boundaries and holes as separate contours (for even-odd readers).

    Raises:
        ValueError: the CT files are unreadable or not one regular CT series, the label does not match the series'
            shape, or the structures are inconsistent with the label.
    """
    if holes not in HOLES:
        raise ValueError(f"holes must be one of {HOLES}, not {holes!r}")
    slices, lps, headers = _read_series(ct_files)
    rows, columns = slices[0].size
    _check_label(label, structures, (columns, rows, len(slices)))
    colours, interpreted_types = colours or {}, interpreted_types or {}
    for name, given in (("colours", colours), ("interpreted_types", interpreted_types)):
        if set(given) - set(structures):
            raise ValueError(f"{name} has label values {sorted(set(given) - set(structures))} not in structures")
    rois = []
    for value, name in sorted(structures.items()):
        colour = colours.get(value, PALETTE[(value - 1) % len(PALETTE)])
        kind = interpreted_types.get(value) or next((t for t in TARGET_TYPES if name.upper().startswith(t)), "ORGAN")
        rois.append((value, name, colour, kind, _contours(label == value, slices, lps, headers, holes)))
    ds = _dataset(headers[slices[0].path], slices, headers, rois, series_description)
    with atomic_path(out_path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return [name for _, name, _, _, contours in rois if not contours]


def _read_series(ct_files: Sequence[Path]) -> tuple[list[Slice], np.ndarray, dict[Path, Dataset]]:
    """The slices sorted along the normal, the voxel-to-LPS affine and each file's header."""
    if not ct_files:
        raise ValueError("no CT files given")
    headers: dict[Path, Dataset] = {}
    for path in map(Path, ct_files):
        ds = read_header(path)
        if ds is None:
            raise ValueError(f"{path}: not a DICOM file")
        headers[path] = ds
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in headers.values()}
    if len(series) != 1:
        raise ValueError(f"CT files belong to {len(series)} series ({sorted(series)}); pass one series")
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        missing = [p for p, ds in headers.items() if not ds.get(key)]
        if missing:
            raise ValueError(f"{missing[0]}: {key} missing; an RTSTRUCT must reference it")
    slices = [image_slice(path, ds, str(ds.Modality).upper()) for path, ds in headers.items()]
    order, lps = sorted_slices(slices)
    return order, lps, headers


def _check_label(label: np.ndarray, structures: dict[int, str], shape: tuple[int, int, int]) -> None:
    """Raise a ValueError unless ``label`` has ``shape`` and integer values all named in ``structures``."""
    if label.shape != shape:
        raise ValueError(f"label shape {label.shape} does not match the CT series' (columns, rows, slices) {shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label must hold integers, not {label.dtype}")
    if not structures:
        raise ValueError("structures is empty; an RTSTRUCT needs at least one ROI")
    names = list(structures.values())
    bad = [n for n in names if not n or len(n) > 64 or "\\" in n]
    if bad or len(set(names)) < len(names) or min(structures) < 1:
        raise ValueError(f"structures must map values >= 1 to unique names of 1..64 characters "
                         f"without '\\': {structures}")
    stray = sorted(set(np.unique(label).tolist()) - {0, *structures})
    if stray:
        raise ValueError(f"label values {stray} are not in structures {sorted(structures)}")


def _contours(mask: np.ndarray, slices: list[Slice], lps: np.ndarray, headers: dict[Path, Dataset],
              holes: str) -> list[Dataset]:
    """CLOSED_PLANAR contour items (LPS mm) of a (X, Y, Z) mask, slice by slice (see `_polygons`)."""
    items = []
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        origin = np.array(slices[k].position)
        for polygon in _polygons(mask[:, :, k], holes):
            image = _item(ReferencedSOPClassUID=headers[slices[k].path].SOPClassUID,
                          ReferencedSOPInstanceUID=slices[k].sop_uid)
            items.append(_item(ContourImageSequence=[image], ContourGeometricType="CLOSED_PLANAR",
                               NumberOfContourPoints=len(polygon),
                               ContourData=_decimal_strings((origin + polygon @ lps[:3, :2].T).ravel())))
    return items


def _polygons(mask: np.ndarray, holes: str) -> list[np.ndarray]:
    """Closed polygons ((N, 2) voxel coordinates, between voxel centres) of a (X, Y) mask: per connected region its
    outer boundary (counter-clockwise) with the holes (clockwise) keyholed into it, or apart when ``nested``."""
    xs, ys = np.nonzero(mask)
    crop = np.pad(mask[xs.min() : xs.max() + 1, ys.min() : ys.max() + 1], 1).astype(np.float64)
    generator = contourpy.contour_generator(z=crop.T, fill_type=contourpy.FillType.OuterOffset)
    offset = np.array([xs.min() - 1, ys.min() - 1], dtype=np.float64)
    polygons = []
    for points, starts in zip(*generator.filled(CONTOUR_LEVEL, np.inf)):
        # each ring repeats its first point at its end
        outer, *inner = [_corners(points[a : b - 1]) + offset for a, b in zip(starts[:-1], starts[1:])]
        polygons += [outer, *inner] if holes == "nested" else [_keyhole(outer, inner)]
    return polygons


def _keyhole(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """``outer`` with each hole spliced in through a cut there and back along a row of voxel centres.

    A hole's cut starts at its rightmost crossing of a row and runs right to the nearest boundary crossing that
    row. Holes are taken in order of that crossing, rightmost first, so the boundary reached is the outer one or
    a hole already spliced in: the cut crosses no boundary and covers only voxel centres of the region (readers
    that round vertices to voxels, as rt-utils does, draw it onto foreground).
    """
    ring = outer
    for x, row, edge, hole in sorted((_rightmost(h) + (h,) for h in holes), key=lambda s: -s[0]):
        edges, rows, xs = _row_crossings(ring)
        ahead = np.flatnonzero((rows == row) & (xs > x))
        hit = ahead[np.argmin(xs[ahead])]
        start, end = np.array([[x, row]]), np.array([[xs[hit], row]])
        around = np.vstack([start, hole[edge + 1 :], hole[: edge + 1], start])
        ring = np.vstack([ring[: edges[hit] + 1], end, around, end, ring[edges[hit] + 1 :]])
    return ring[np.any(ring != np.roll(ring, 1, axis=0), axis=1)]  # a cut ending on a vertex repeats it


def _rightmost(ring: np.ndarray) -> tuple[float, int, int]:
    """The rightmost crossing of a row by the closed polygon ``ring``: (x, row, index of the edge crossing)."""
    edges, rows, xs = _row_crossings(ring)
    i = int(np.argmax(xs))
    return float(xs[i]), int(rows[i]), int(edges[i])


def _row_crossings(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the closed polygon ``ring`` crosses the rows y = integer: (edge index, row, x) arrays.

    Edge i runs from vertex i to i + 1 and counts the rows in [lower y, upper y): a vertex on a row is counted once,
    a horizontal edge (a cut) never.
    """
    a, b = ring, np.roll(ring, -1, axis=0)
    first = np.ceil(np.minimum(a[:, 1], b[:, 1])).astype(int)
    counts = np.maximum(np.ceil(np.maximum(a[:, 1], b[:, 1])).astype(int) - first, 0)
    edges = np.repeat(np.arange(len(ring)), counts)
    rows = first[edges] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    t = (rows - a[edges, 1]) / (b[edges, 1] - a[edges, 1])
    return edges, rows, a[edges, 0] + t * (b[edges, 0] - a[edges, 0])


def _corners(points: np.ndarray) -> np.ndarray:
    """A closed polygon (voxel coordinates) without the vertices on a straight line between their neighbours."""
    before, after = points - np.roll(points, 1, axis=0), np.roll(points, -1, axis=0) - points
    return points[np.abs(before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]) > 1e-6]


def _decimal_strings(values: np.ndarray) -> list[str]:
    """Values as DS strings with `CONTOUR_DECIMALS` decimals, trailing zeros dropped; at most `DS_MAX_CHARS` each."""
    strings = []
    for value in values:
        text = f"{value:.{CONTOUR_DECIMALS}f}".rstrip("0").rstrip(".")
        text = "0" if text == "-0" else text
        if len(text) > DS_MAX_CHARS:
            raise ValueError(f"coordinate {value} mm does not fit a DICOM decimal string ({DS_MAX_CHARS} characters)")
        strings.append(text)
    return strings


def _dataset(
    ct: Dataset,
    slices: list[Slice],
    headers: dict[Path, Dataset],
    rois: list[tuple[int, str, tuple[int, int, int], str, list[Dataset]]],
    series_description: str,
) -> FileDataset:
    """The RT Structure Set: patient, study and frame of reference from ``ct``; one ROI per (value, name, ...)."""
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian  # explicit VR caps DS values (Contour Data) at 64 KiB
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    with warnings.catch_warnings():  # copied as they are (so planning systems match patient and study), even
        warnings.simplefilter("ignore")  # where the CT breaks a VR's rules (a 17-character StudyID)
        for keyword in _PATIENT_STUDY:
            if keyword in ct:
                ds.add(copy.deepcopy(ct[keyword]))
            else:
                setattr(ds, keyword, "")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = SERIES_NUMBER
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = series_description
    ds.OperatorsName = ""
    ds.Manufacturer = "hqctf"
    ds.SoftwareVersions = __version__
    ds.StructureSetLabel = "hqctf"
    ds.StructureSetDate, ds.StructureSetTime = date, time
    ds.ReferencedFrameOfReferenceSequence = [_frame_reference(ct, slices, headers)]
    ds.StructureSetROISequence = [_item(ROINumber=value, ReferencedFrameOfReferenceUID=ct.FrameOfReferenceUID,
                                        ROIName=name, ROIGenerationAlgorithm="AUTOMATIC")
                                  for value, name, *_ in rois]
    ds.ROIContourSequence = [_item(ROIDisplayColor=list(colour), ReferencedROINumber=value,
                                   **({"ContourSequence": contours} if contours else {}))
                             for value, _, colour, _, contours in rois]
    ds.RTROIObservationsSequence = [_item(ObservationNumber=value, ReferencedROINumber=value,
                                          RTROIInterpretedType=kind, ROIInterpreter="")
                                    for value, _, _, kind, _ in rois]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _frame_reference(ct: Dataset, slices: list[Slice], headers: dict[Path, Dataset]) -> Dataset:
    """ReferencedFrameOfReferenceSequence item: frame of reference -> study -> series -> every CT image."""
    images = [_item(ReferencedSOPClassUID=headers[s.path].SOPClassUID, ReferencedSOPInstanceUID=s.sop_uid)
              for s in slices]
    series = _item(SeriesInstanceUID=ct.SeriesInstanceUID, ContourImageSequence=images)
    study = _item(ReferencedSOPClassUID=STUDY_REFERENCE_CLASS, ReferencedSOPInstanceUID=ct.StudyInstanceUID,
                  RTReferencedSeriesSequence=[series])
    return _item(FrameOfReferenceUID=ct.FrameOfReferenceUID, RTReferencedStudySequence=[study])


def _item(**elements: object) -> Dataset:
    """A sequence item with the given keyword = value elements."""
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item
