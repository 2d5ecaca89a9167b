"""`DicomSource`: CT series with RTSTRUCT or DICOM-SEG labels, read from a folder tree of DICOM files.

Every CT series (SeriesInstanceUID) is one case. An RTSTRUCT or DICOM-SEG file is attached to the series it
references. RTSTRUCT contours are rasterised here (voxel centre inside the polygon, even-odd rule per slice, so
holes and islands work); where structures overlap, the higher label value wins.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import highdicom as hd
import numpy as np
import pydicom
from matplotlib.path import Path as PolygonPath
from pydicom.dataset import Dataset

from ..atomic import write_json_atomic
from .case import Case
from .errors import DataError
from .source import Source
from .structures import match_structures

#: Largest allowed deviation of one slice spacing from the typical one: max(absolute mm, relative fraction).
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_REL = 0.01
#: A gap this many times the typical spacing or more is reported as missing slices, not as uneven spacing.
MISSING_SLICE_RATIO = 1.5
#: Largest in-plane offset (mm) of a slice position from the line through the first slice along the normal.
TILT_TOLERANCE_MM = 0.1
#: Largest deviation of an ImageOrientationPatient direction cosine from 0 or +-1 (about 0.06 degrees).
OBLIQUE_TOLERANCE = 1e-3
#: RAS = diag(-1, -1, 1, 1) @ LPS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_LABEL_MODALITIES = ("RTSTRUCT", "SEG")
_NOT_IMAGES = frozenset({"RTSTRUCT", "SEG", "RTDOSE", "RTPLAN", "RTRECORD", "REG", "SR", "KO", "PR"})
_CONTOUR_DATA = 0x30060050


@dataclass(frozen=True)
class Slice:
    """Header fields of one image file, as indexed (geometry None where missing or malformed)."""

    path: Path
    sop_uid: str
    modality: str
    series_number: str
    patient_id: str
    localizer: bool
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    size: tuple[int, int]


@dataclass(frozen=True)
class _LabelFile:
    """An RTSTRUCT or DICOM-SEG file: what it references and the structure names it holds."""

    path: Path
    modality: str
    series_uid: str
    names: tuple[str, ...]
    filled: frozenset[str]


@dataclass
class _Series:
    """One image series (a case) and its label file, if any."""

    uid: str
    slices: list[Slice] = field(default_factory=list)
    labels: _LabelFile | None = None


class DicomSource(Source):
    """CT series with RTSTRUCT or DICOM-SEG labels under ``root`` (one case folder or a folder of case folders).

    Args:
        root: folder scanned recursively; any file name counts, non-DICOM files are skipped.
        labels: label value -> structure name. None: the sorted names of all non-empty ROIs / segments found,
            numbered 1..K, matched exactly; a case lacking one of them has it in ``case.unknown``.
        aliases: label name -> extra names or glob patterns for `match_structures`.
        missing: a label with no matching ROI (or only an empty one) in a labelled case: ``"error"`` raises,
            ``"unknown"`` puts it in ``case.unknown``.
        index_file: JSON file keeping what the folder scan found per file (keyed by path, size and mtime), so a
            later scan of unchanged files reads no DICOM at all; None scans every header each time.

    Case ids are the first-level subfolder of ``root`` holding the series when there are several such folders
    (``ibsi_dicom/STS_008/...`` -> ``"STS_008"``), otherwise the name of ``root``; ``_<SeriesNumber>`` is
    appended when one folder holds several CT series. A series without RTSTRUCT/SEG is read with ``label=None``.
    """

    format = "dicom"

    def __init__(
        self,
        root: str | Path,
        labels: dict[int, str] | None = None,
        aliases: Mapping[str, Sequence[str]] | None = None,
        missing: Literal["error", "unknown"] = "error",
        index_file: str | Path | None = None,
    ) -> None:
        if missing not in ("error", "unknown"):
            raise ValueError(f"missing must be 'error' or 'unknown', not {missing!r}")
        super().__init__(root, labels or {})
        self.aliases = dict(aliases or {})
        self.missing = missing
        self._exact = labels is None
        self.index_file = None if index_file is None else Path(index_file)
        self._index: dict[str, _Series] | None = None
        if self._exact:
            names = sorted({n for s in self._cases().values() if s.labels for n in s.labels.filled})
            self.labels = {value: name for value, name in enumerate(names, start=1)}

    def case_ids(self) -> list[str]:
        """Identifiers of all cases (one per CT series), sorted."""
        return sorted(self._cases())

    def files(self, case_id: str) -> list[Path]:
        """The case's image files (sorted by name), then its RTSTRUCT/SEG file."""
        series = self._series(case_id)
        extra = [series.labels.path] if series.labels else []
        return sorted(s.path for s in series.slices) + extra

    def read(self, case_id: str) -> Case:
        """Read the CT volume in HU and rasterise its labels; raises a one-line `DataError` naming the file."""
        series = self._series(case_id)
        slices, lps = sorted_slices(series.slices)
        image = _read_pixels(slices)
        label, unknown = None, frozenset[int]()
        sources: tuple[Path, ...] = (slices[0].path,)
        if series.labels is not None:
            matched, unknown = self._match(series.labels)
            if series.labels.modality == "RTSTRUCT":
                label = _rasterise_rtstruct(series.labels.path, matched, image.shape, lps)
            else:
                label = _read_seg(series.labels.path, matched, [s.sop_uid for s in slices], image.shape)
            sources += (series.labels.path,)
        case = Case(
            case_id=case_id,
            image=image,
            affine=LPS_TO_RAS @ lps,
            label=label,
            structures=dict(self.labels) if label is not None else {},
            unknown=unknown,
            patient_id=slices[0].patient_id,
            sources=sources,
        )
        return case.validate()

    def _match(self, labels: _LabelFile) -> tuple[dict[int, str], frozenset[int]]:
        """Label value -> structure name in ``labels``, and the label values not contoured there."""
        if self._exact:
            found: dict[int, str | None] = {v: n if n in labels.filled else None for v, n in self.labels.items()}
        else:
            try:
                found = match_structures(labels.names, self.labels, self.aliases)
            except DataError as exc:
                raise DataError(f"{labels.path}: {exc}") from None
            if self.missing == "unknown":  # an ROI without contours was not contoured either
                found = {v: n if n in labels.filled else None for v, n in found.items()}
        absent = [v for v, n in found.items() if n is None]
        if absent and self.missing == "error" and not self._exact:
            kind = "ROI" if labels.modality == "RTSTRUCT" else "segment"
            wanted = ", ".join(repr(self.labels[v]) for v in absent)
            raise DataError(f"{labels.path}: no {kind} matches label(s) {wanted}; {kind}s present: {list(labels.names)}")
        return {v: n for v, n in found.items() if n is not None}, frozenset(absent)

    def _series(self, case_id: str) -> _Series:
        cases = self._cases()
        if case_id not in cases:
            raise DataError(f"{self.root}: no case '{case_id}' (cases: {sorted(cases)})")
        return cases[case_id]

    def _cases(self) -> dict[str, _Series]:
        """Case id -> series, built once per instance from the DICOM headers under ``root``."""
        if self._index is None:
            self._index = _name_cases(self.root, _index_series(self.root, self.index_file))
        return self._index


def _header_entry(path: Path) -> dict | None:
    """What the folder index keeps of one file: an image slice, a label file, or None (not data)."""
    ds = read_header(path)
    if ds is None:
        return None
    modality = str(ds.Modality).upper()
    if modality in _LABEL_MODALITIES:
        try:
            labels, sop_uids = _label_file(path, ds, modality)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed {modality} header ({type(exc).__name__}: {exc})") from None
        return {"labels": {**asdict(labels), "path": str(path), "filled": sorted(labels.filled)},
                "sop_uids": sop_uids}
    if modality not in _NOT_IMAGES and "Rows" in ds:
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            raise DataError(f"{path}: missing SeriesInstanceUID")
        return {"slice": {**asdict(image_slice(path, ds, modality)), "path": str(path)}, "series": uid}
    return None


def _indexed_headers(root: Path, index_file: Path | None) -> Iterator[tuple[Path, dict | None]]:
    """Each file's index entry; with ``index_file``, entries of files whose size and mtime are unchanged come from
    it (no DICOM is read), and the refreshed index is written back atomically."""
    known: dict[str, Any] = {}
    if index_file is not None and index_file.is_file():
        try:
            known = json.loads(index_file.read_text())
        except ValueError:
            known = {}
    fresh: dict[str, Any] = {}
    for path in _walk(root):
        stat = path.stat()
        key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
        entry = known[key]["entry"] if key in known and known[key]["stamp"] == stamp else _header_entry(path)
        fresh[key] = {"stamp": stamp, "entry": entry}
        yield path, entry
    if index_file is not None and fresh != known:
        write_json_atomic(index_file, fresh)


def _slice_from(entry: dict, path: Path) -> Slice:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
    return Slice(**{**values, "path": path})


def _index_series(root: Path, index_file: Path | None = None) -> list[_Series]:
    """Scan ``root`` for DICOM files; group image files by series and attach RTSTRUCT/SEG files to them."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    series: dict[str, _Series] = {}
    sop_to_series: dict[str, str] = {}
    label_files: list[tuple[_LabelFile, list[str]]] = []
    for path, entry in list(_indexed_headers(root, index_file)):
        if entry is None:
            continue
        if "labels" in entry:
            fields = entry["labels"]
            label_files.append((_LabelFile(path, fields["modality"], fields["series_uid"], tuple(fields["names"]),
                                           frozenset(fields["filled"])), entry["sop_uids"]))
        else:
            image = _slice_from(entry["slice"], path)
            series.setdefault(entry["series"], _Series(entry["series"])).slices.append(image)
            sop_to_series[image.sop_uid] = entry["series"]
    for labels, sop_uids in label_files:
        uid = labels.series_uid or next((sop_to_series[s] for s in sop_uids if s in sop_to_series), "")
        if uid not in series:
            ref = labels.series_uid or f"images {sop_uids[:3]}"
            raise DataError(f"{labels.path}: references series {ref}, which is not under {root}; "
                            f"series present: {sorted(series)}")
        target = series[uid]
        if target.labels is not None:
            raise DataError(f"{labels.path}: series {uid} already has labels from {target.labels.path}; "
                            "keep one RTSTRUCT/SEG per CT series")
        target.labels = replace(labels, series_uid=uid)
    found = [s for s in series.values() if s.labels is not None or _is_plain_ct(s)]
    if not found:
        others = sorted({s.slices[0].modality for s in series.values()})
        raise DataError(f"{root}: no CT series found (other image series: {others or 'none'})")
    return found


def image_slice(path: Path, ds: Dataset, modality: str) -> Slice:
    """Index one image file."""
    image_type = [str(t).upper() for t in ds.get("ImageType", [])]
    return Slice(
        path=path,
        sop_uid=str(ds.SOPInstanceUID),
        modality=modality,
        series_number=str(ds.get("SeriesNumber", "")),
        patient_id=str(ds.get("PatientID", "")),
        localizer="LOCALIZER" in image_type,
        position=_floats(ds, "ImagePositionPatient", 3),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=_floats(ds, "PixelSpacing", 2),
        size=(int(ds.Rows), int(ds.get("Columns", 0))),
    )


def _floats(ds: Dataset, key: str, n: int) -> tuple[float, ...] | None:
    """A multi-valued numeric attribute as ``n`` floats, or None where it is missing or malformed."""
    try:
        values = tuple(float(v) for v in ds[key].value)
    except (KeyError, TypeError, ValueError):
        return None
    return values if len(values) == n and all(np.isfinite(values)) else None


def _is_plain_ct(series: _Series) -> bool:
    """An unlabelled series counts as a case when it is CT and not a localizer (scout)."""
    return all(s.modality == "CT" for s in series.slices) and not any(s.localizer for s in series.slices)


def _name_cases(root: Path, found: list[_Series]) -> dict[str, _Series]:
    """Case id for each series: its first-level folder under ``root`` (or ``root``'s name), plus SeriesNumber."""
    root_name = root.resolve().name

    def top(s: _Series) -> str | None:
        parts = min(p.path for p in s.slices).relative_to(root).parts
        return parts[0] if len(parts) > 1 else None

    tops = {top(s) for s in found}
    by_name: dict[str, list[_Series]] = defaultdict(list)
    for s in found:
        by_name[(top(s) if len(tops) > 1 else None) or root_name].append(s)
    cases: dict[str, _Series] = {}
    for name, group in by_name.items():
        for i, s in enumerate(sorted(group, key=lambda s: (s.slices[0].series_number, s.uid))):
            case_id = name if len(group) == 1 else f"{name}_{s.slices[0].series_number or i}"
            cases[case_id if case_id not in cases else f"{case_id}_{i}"] = s
    return cases


def _walk(root: Path) -> Iterator[Path]:
    """All regular files under ``root``, in a stable order."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file, or None for a file that is not DICOM (a ``.dcm`` file must parse)."""
    try:
        with path.open("rb") as fh:
            preamble = fh.read(132)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    is_dicom = preamble[128:132] == b"DICM"
    if not is_dicom and path.suffix.lower() != ".dcm":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            has_ids = "SOPInstanceUID" in ds and "Modality" in ds and bool(str(ds.Modality))
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DataError(f"{path}: cannot read DICOM header, file truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if has_ids:
        return ds
    if is_dicom:  # DICOMDIR and other files without an instance: not data
        return None
    raise DataError(f"{path}: not a DICOM file or corrupt (no SOPInstanceUID/Modality)")


def _label_file(path: Path, ds: Dataset, modality: str) -> tuple[_LabelFile, list[str]]:
    """Index an RTSTRUCT/SEG header; also returns the image SOP UIDs it references (for the fallback)."""
    if modality == "SEG":
        refs = ds.get("ReferencedSeriesSequence", [])
        uid = str(refs[0].SeriesInstanceUID) if refs else ""
        names = tuple(str(s.get("SegmentLabel", "")) for s in ds.get("SegmentSequence", []))
        return _LabelFile(path, modality, uid, names, frozenset(names)), []
    uid = ""
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for ref in study.get("RTReferencedSeriesSequence", []):
                uid = uid or str(ref.get("SeriesInstanceUID", ""))
    rois = _roi_contours(ds)
    sop_uids = [str(img.ReferencedSOPInstanceUID) for contours in rois.values() for c in contours
                for img in c.get("ContourImageSequence", [])]
    filled = frozenset(name for name, contours in rois.items() if contours)
    return _LabelFile(path, modality, uid, tuple(rois), filled), sop_uids


def _roi_contours(ds: Dataset) -> dict[str, list[Dataset]]:
    """ROI name -> its CLOSED_PLANAR contour items that hold points (POINT and other types are ignored)."""
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    contours: dict[str, list[Dataset]] = {name: [] for name in names.values()}
    for roi in ds.get("ROIContourSequence", []):
        name = names.get(int(roi.ReferencedROINumber))
        if name is None:
            continue
        for c in roi.get("ContourSequence", []):
            if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) == "CLOSED_PLANAR" and _CONTOUR_DATA in c:
                contours[name].append(c)
    return contours


def sorted_slices(slices: list[Slice]) -> tuple[list[Slice], np.ndarray]:
    """Check the series is a regular CT grid; returns the slices sorted along the normal and the LPS affine."""
    first = slices[0]
    for s in slices:
        if s.modality != "CT":
            raise DataError(f"{s.path}: modality {s.modality}; hqctf reads CT")
        for key, value in (("ImagePositionPatient", s.position), ("ImageOrientationPatient", s.orientation),
                           ("PixelSpacing", s.pixel_spacing)):
            if value is None:
                raise DataError(f"{s.path}: {key} missing or malformed")
        for key, value, ref in (("ImageOrientationPatient", s.orientation, first.orientation),
                                ("PixelSpacing", s.pixel_spacing, first.pixel_spacing)):
            if not np.allclose(value, ref, atol=1e-4):
                raise DataError(f"{s.path}: {key} {list(value)} differs from {list(ref)} in {first.path.name}")
        if s.size != first.size:
            raise DataError(f"{s.path}: slice size {s.size[0]}x{s.size[1]} differs from "
                            f"{first.size[0]}x{first.size[1]} in {first.path.name}")
    iop, pixel_spacing = np.array(first.orientation), np.array(first.pixel_spacing)
    if np.max(np.abs(np.abs(iop) - np.round(np.abs(iop)))) > OBLIQUE_TOLERANCE:
        raise DataError(f"{first.path}: oblique ImageOrientationPatient {[round(float(v), 4) for v in iop]}; hqctf reads "
                        "axis-aligned series (reformat it to axial first)")
    normal = np.cross(iop[:3], iop[3:])
    order = sorted(slices, key=lambda s: float(np.dot(s.position, normal)))
    positions = np.array([s.position for s in order])
    slice_spacing = _check_positions(order, positions, normal)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * pixel_spacing[1]
    lps[:3, 1] = iop[3:] * pixel_spacing[0]
    lps[:3, 2] = normal * slice_spacing
    lps[:3, 3] = positions[0]
    return order, lps


def _check_positions(order: list[Slice], positions: np.ndarray, normal: np.ndarray) -> float:
    """Raise on duplicate, missing, unevenly spaced or tilted slices; returns the slice spacing in mm (1 for one slice)."""
    if len(order) == 1:
        return 1.0
    z = positions @ normal
    offsets = positions - positions[0] - np.outer(z - z[0], normal)
    tilted = int(np.argmax(np.linalg.norm(offsets, axis=1)))
    if np.linalg.norm(offsets[tilted]) > TILT_TOLERANCE_MM:
        raise DataError(f"{order[tilted].path}: slice position is off the slice normal by "
                        f"{np.linalg.norm(offsets[tilted]):.3g} mm (gantry tilt?); hqctf needs an orthogonal grid")
    gaps = np.diff(z)
    for i, gap in enumerate(gaps):
        if gap < SPACING_TOLERANCE_MM:
            raise DataError(f"{order[i + 1].path}: duplicate slice position z={z[i + 1]:.3f} mm (same as {order[i].path.name})")
    typical = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_REL * typical)
    for i, gap in enumerate(gaps):
        if gap >= MISSING_SLICE_RATIO * typical:
            raise DataError(f"{order[i].path}: missing slice(s) between z={z[i]:.3f} and z={z[i + 1]:.3f} mm "
                            f"(gap {gap:.3f} mm, spacing {typical:.3f} mm)")
    uneven = [i for i, gap in enumerate(gaps) if abs(gap - typical) > tolerance]
    if uneven:
        found = sorted({round(float(g), 3) for g in gaps})
        raise DataError(f"{order[uneven[0] + 1].path}: uneven slice spacing, found spacings {found} mm "
                        f"(tolerance {tolerance:.3g} mm)")
    return float((z[-1] - z[0]) / (len(z) - 1))


def _read_pixels(slices: list[Slice]) -> np.ndarray:
    """HU volume (X = columns, Y = rows, Z = slices, in the order given) as float32."""
    rows, columns = slices[0].size
    volume = np.empty((columns, rows, len(slices)), dtype=np.float32)
    for k, s in enumerate(slices):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(s.path, force=True)
                pixels = ds.pixel_array
            slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
        except Exception as exc:  # pydicom and its pixel handlers raise many types for damaged files
            reason = f"{type(exc).__name__}: {exc}"
            raise DataError(f"{s.path}: cannot read pixel data, file truncated or corrupt ({reason})") from None
        if pixels.shape != (rows, columns):
            raise DataError(f"{s.path}: pixel data has shape {pixels.shape}, expected one {rows}x{columns} frame")
        volume[:, :, k] = (pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)).T
    return volume


def _rasterise_rtstruct(path: Path, matched: dict[int, str], shape: tuple[int, ...], lps: np.ndarray) -> np.ndarray:
    """Label map (X, Y, Z) from the RTSTRUCT's contours; higher label values win where structures overlap."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            rois = _roi_contours(ds)
            roi_names = [str(r.ROIName) for r in ds.get("StructureSetROISequence", [])]
    except Exception as exc:  # pydicom raises many types for damaged files
        raise DataError(f"{path}: cannot read RTSTRUCT ({type(exc).__name__}: {exc})") from None
    to_voxel = np.linalg.inv(lps)
    normal = lps[:3, 2] / np.linalg.norm(lps[:3, 2])
    z_range = f"{lps[:3, 3] @ normal:.2f}..{(lps[:3, 3] + (shape[2] - 1) * lps[:3, 2]) @ normal:.2f} mm"
    label = np.zeros(shape, dtype=_label_dtype(max(matched, default=0)))
    for value, name in sorted(matched.items()):
        if roi_names.count(name) > 1:
            raise DataError(f"{path}: {roi_names.count(name)} ROIs are named '{name}'; rename all but one")
        if not rois.get(name):
            raise DataError(f"{path}: ROI '{name}' is empty (no CLOSED_PLANAR contour data)")
        mask = np.zeros(shape, dtype=bool)
        for contour in rois[name]:
            try:
                world = _contour_points(contour)
            except ValueError as exc:
                raise DataError(f"{path}: ROI '{name}' has malformed ContourData ({exc})") from None
            points = world @ to_voxel[:3, :3].T + to_voxel[:3, 3]
            k = _slice_index(points, shape)
            if k is None:
                z = float(world.mean(axis=0) @ normal)
                raise DataError(f"{path}: ROI '{name}' has a contour at z={z:.2f} mm that is off the CT grid "
                                f"(by more than half a slice, or outside the volume; CT spans z={z_range})")
            mask[:, :, k] ^= _polygon_mask(points[:, :2], shape[0], shape[1])
        label[mask] = value
    return label


def _slice_index(points: np.ndarray, shape: tuple[int, ...]) -> int | None:
    """The slice a contour (voxel coordinates) lies on, or None when it is off the grid or outside the volume."""
    k = int(round(float(points[:, 2].mean())))
    on_slice = 0 <= k < shape[2] and bool(np.all(np.abs(points[:, 2] - k) <= 0.5))
    in_plane = bool(np.all(points[:, :2].max(axis=0) >= -0.5) and np.all(points[:, :2].min(axis=0) <= np.array(shape[:2]) - 0.5))
    return k if on_slice and in_plane else None


def _label_dtype(max_value: int) -> type:
    """uint8 for up to 255 labels, else uint16."""
    return np.uint8 if max_value < 256 else np.uint16


def _contour_points(contour: Dataset) -> np.ndarray:
    """ContourData as an (N, 3) float array (parsed straight from the raw bytes when not yet decoded)."""
    value = contour.get_item(_CONTOUR_DATA).value
    if isinstance(value, bytes):
        values = np.array(value.split(b"\\"), dtype=np.float64)
    else:
        values = np.array([float(v) for v in value], dtype=np.float64)
    return values.reshape(-1, 3)


def _polygon_mask(xy: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """(nx, ny) mask of the voxel centres inside the polygon ``xy`` (voxel coordinates), tested in its bounding box."""
    mask = np.zeros((nx, ny), dtype=bool)
    lo = np.maximum(np.floor(xy.min(axis=0)), 0).astype(int)
    hi = np.minimum(np.ceil(xy.max(axis=0)), [nx - 1, ny - 1]).astype(int)
    if np.any(hi < lo):
        return mask
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    inside = PolygonPath(xy).contains_points(np.column_stack([ii.ravel(), jj.ravel()]))
    mask[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1] = inside.reshape(ii.shape)
    return mask


def _read_seg(path: Path, matched: dict[int, str], sop_uids: list[str], shape: tuple[int, ...]) -> np.ndarray:
    """Label map (X, Y, Z) of ``shape`` from a DICOM-SEG for the CT slices ``sop_uids`` (in slice order)."""
    if not matched:
        return np.zeros(shape, dtype=np.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
            numbers = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}
            values = sorted(matched)
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=sop_uids,
                segment_numbers=[numbers[matched[v]] for v in values],
                combine_segments=True,
                relabel=True,
                skip_overlap_checks=True,  # the highest relabelled value (= highest label value) wins
                assert_missing_frames_are_empty=True,
                ignore_spatial_locations=True,  # dcmqi and others omit SpatialLocationsPreserved; Case checks shapes
            )
    except Exception as exc:  # highdicom raises many types for inconsistent segmentations
        raise DataError(f"{path}: cannot read DICOM-SEG ({type(exc).__name__}: {exc})") from None
    lut = np.array([0, *values], dtype=_label_dtype(max(values, default=0)))
    label = lut[np.asarray(pixels)].transpose(2, 1, 0)
    for value in values:
        if not np.any(label == value):
            raise DataError(f"{path}: segment '{matched[value]}' is empty on this CT series")
    return np.ascontiguousarray(label)
