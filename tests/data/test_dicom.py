"""`DicomSource`: real IBSI CT + RTSTRUCT against their NIfTI twins, a real DICOM-SEG, and damaged copies."""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from hqctf.data.dicom import DicomSource
from hqctf.data.errors import DataError

IBSI_CASES = ["STS_008", "STS_019", "STS_025", "STS_042"]
GTV = {"labels": {1: "GTV_Mass"}, "aliases": {"GTV_Mass": ["GTV_Mass*"]}}
COPIED = "STS_019"  # the smallest IBSI case (47 slices), copied and damaged below


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.sum(a & b)) / float(np.sum(a) + np.sum(b))


def _load(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _save(ds: Dataset, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path)


def _slices(case: Path) -> list[Path]:
    """CT slice files of a copied case, sorted along z."""
    files = sorted((case / "CT" / "image").glob("*.dcm"))
    return sorted(files, key=lambda p: float(_load(p).ImagePositionPatient[2]))


def _edit(path: Path, **values: object) -> None:
    ds = _load(path)
    for key, value in values.items():
        setattr(ds, key, value)
    _save(ds, path)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ibsi(shared_data: Path) -> DicomSource:
    return DicomSource(shared_data / "ibsi_dicom", **GTV)


@pytest.fixture
def case_copy(shared_data: Path, tmp_path: Path) -> Path:
    """A writable copy of one IBSI case folder (``<tmp>/STS_019/CT/{image,mask}``)."""
    return Path(shutil.copytree(shared_data / "ibsi_dicom" / COPIED, tmp_path / COPIED))


@pytest.mark.parametrize("case_id", IBSI_CASES)
def test_ibsi_case_matches_its_nifti_twin(ibsi: DicomSource, shared_data: Path, case_id: str) -> None:
    nnunet = shared_data / "Dataset002_IBSISarcomaGTV"
    image = nib.load(nnunet / "imagesTr" / f"{case_id}_0000.nii.gz")
    label = np.asarray(nib.load(nnunet / "labelsTr" / f"{case_id}.nii.gz").dataobj)

    case = ibsi.read(case_id)

    assert case_id in ibsi.case_ids()
    assert case.patient_id == case_id and case.structures == {1: "GTV_Mass"} and not case.unknown
    assert case.image.dtype == np.float32 and case.label is not None and case.label.dtype == np.uint8
    np.testing.assert_allclose(case.affine, image.affine, atol=1e-3)
    np.testing.assert_array_equal(case.image, np.asarray(image.dataobj, dtype=np.float32))  # identical HU
    assert _dice(case.label == 1, label == 1) >= 0.99
    assert case.sources[-1].name == "RS.dcm" and case.sources[0].parent.name == "image"
    assert ibsi.files(case_id)[-1] == case.sources[-1]
    assert len(ibsi.files(case_id)) == case.image.shape[2] + 1


def test_labels_default_to_the_roi_names_found(shared_data: Path) -> None:
    assert DicomSource(shared_data / "ibsi_dicom").labels == {1: "GTV_Mass_CT"}
    one = DicomSource(shared_data / "ibsi_dicom" / "STS_008")  # a single case folder: the case takes its name
    assert one.case_ids() == ["STS_008"]
    assert one.read("STS_008").structures == {1: "GTV_Mass_CT"}


def test_dicom_seg_liver_agrees_with_highdicom(shared_data: Path) -> None:
    root = shared_data / "dcmqi_ct3slice"
    source = DicomSource(root, labels={1: "Liver"})
    assert source.case_ids() == ["dcmqi_ct3slice"]

    case = source.read("dcmqi_ct3slice")

    assert case.label is not None and case.image.shape == case.label.shape == (512, 512, 3)
    assert case.sources[-1] == root / "liver.dcm"
    assert all(case.label[:, :, k].any() for k in range(3))
    # highdicom's own volume (slice, row, column) in LPS: map each of our voxels there through both affines.
    volume = hd.seg.segread(root / "liver.dcm").get_volume(combine_segments=True)
    xyz = np.stack(np.meshgrid(*(np.arange(n) for n in case.label.shape), indexing="ij"), axis=-1).reshape(-1, 3)
    lps = (np.diag([-1.0, -1.0, 1.0, 1.0]) @ case.affine) @ np.c_[xyz, np.ones(len(xyz))].T
    krc = np.rint(np.linalg.inv(volume.affine) @ lps)[:3].astype(int)
    np.testing.assert_array_equal(case.label.reshape(-1), volume.array[krc[0], krc[1], krc[2]])


def test_dicom_seg_missing_segment(shared_data: Path) -> None:
    root, labels = shared_data / "dcmqi_ct3slice", {1: "Liver", 2: "Spleen"}
    with pytest.raises(DataError, match=r"liver\.dcm: no segment matches label\(s\) 'Spleen'; segments present: \['Liver'\]"):
        DicomSource(root, labels=labels).read("dcmqi_ct3slice")
    case = DicomSource(root, labels=labels, missing="unknown").read("dcmqi_ct3slice")
    assert case.unknown == {2} and case.label is not None and set(np.unique(case.label).tolist()) == {0, 1}


def test_missing_roi_can_be_unknown(case_copy: Path) -> None:
    labels = {1: "GTV_Mass", 2: "SpinalCord"}
    case = DicomSource(case_copy, labels=labels, aliases=GTV["aliases"], missing="unknown").read(COPIED)
    assert case.unknown == {2} and case.known == {1: "GTV_Mass"}
    assert case.label is not None and set(np.unique(case.label).tolist()) == {0, 1}


def test_several_series_in_one_case_folder(case_copy: Path) -> None:
    """A second (unlabelled) CT series in the same case folder: ids get the SeriesNumber, label is None."""
    shutil.copytree(case_copy / "CT" / "image", case_copy / "CT" / "rescan")
    series_uid = pydicom.uid.generate_uid()
    for path in (case_copy / "CT" / "rescan").iterdir():
        _edit(path, SeriesInstanceUID=series_uid, SeriesNumber=7, SOPInstanceUID=pydicom.uid.generate_uid())
    number = _load(_slices(case_copy)[0]).SeriesNumber

    source = DicomSource(case_copy, **GTV)

    assert source.case_ids() == [f"{COPIED}_{number}", f"{COPIED}_7"]
    labelled, plain = source.read(f"{COPIED}_{number}"), source.read(f"{COPIED}_7")
    assert labelled.label is not None and plain.label is None and plain.structures == {}
    np.testing.assert_array_equal(labelled.image, plain.image)


def test_rtstruct_found_through_its_contour_images(case_copy: Path) -> None:
    """Without RTReferencedSeriesSequence the RTSTRUCT is attached through ContourImageSequence; stray files are skipped."""
    rs_path = case_copy / "CT" / "mask" / "RS.dcm"
    rs = _load(rs_path)
    del rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence
    image = Dataset()
    image.ReferencedSOPInstanceUID = _load(_slices(case_copy)[0]).SOPInstanceUID
    rs.ROIContourSequence[0].ContourSequence[0].ContourImageSequence = [image]
    _save(rs, rs_path)
    (case_copy / "notes.txt").write_text("not DICOM")

    case = DicomSource(case_copy, **GTV).read(COPIED)

    assert case.label is not None and case.label.any() and case.sources[-1] == rs_path


def test_reading_leaves_the_input_untouched(case_copy: Path) -> None:
    before = _digest(case_copy)
    source = DicomSource(case_copy, **GTV)
    for case_id in source.case_ids():
        source.read(case_id)
    assert _digest(case_copy) == before


def test_ring_roi_has_a_hole_and_islands(case_copy: Path) -> None:
    """Outer square, inner square (hole) and a separate square on one slice, combined even-odd."""
    rs_path = case_copy / "CT" / "mask" / "RS.dcm"
    first = _load(_slices(case_copy)[0])
    k = 20
    origin = np.array(first.ImagePositionPatient, dtype=float) + [0.0, 0.0, k * 3.27]
    step = float(first.PixelSpacing[0])  # square pixels, identity orientation: voxel (x, y) -> origin + step * (x, y)

    def square(lo: float, hi: float) -> Dataset:
        corners = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
        contour = Dataset()
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = 4
        contour.ContourData = [f"{v:.4f}" for x, y in corners for v in origin + [step * x, step * y, 0.0]]
        return contour

    rs = _load(rs_path)
    rs.ROIContourSequence[0].ContourSequence = [square(10.5, 30.5), square(15.5, 25.5), square(40.5, 45.5)]
    _save(rs, rs_path)

    case = DicomSource(case_copy, **GTV).read(COPIED)

    expected = np.zeros(case.image.shape[:2], dtype=np.uint8)
    expected[11:31, 11:31] = 1
    expected[16:26, 16:26] = 0
    expected[41:46, 41:46] = 1
    assert case.label is not None
    np.testing.assert_array_equal(case.label[:, :, k], expected)
    assert int(case.label.sum()) == 20 * 20 - 10 * 10 + 5 * 5


def _empty_roi(case: Path) -> Path:
    path = case / "CT" / "mask" / "RS.dcm"
    rs = _load(path)
    del rs.ROIContourSequence[0].ContourSequence
    _save(rs, path)
    return path


def _foreign_series(case: Path) -> Path:
    path = case / "CT" / "mask" / "RS.dcm"
    rs = _load(path)
    study = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    study.RTReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"
    _save(rs, path)
    return path


def _duplicate_roi_name(case: Path) -> Path:
    path = case / "CT" / "mask" / "RS.dcm"
    rs = _load(path)
    twin = Dataset()
    twin.ROINumber, twin.ROIName = 2, rs.StructureSetROISequence[0].ROIName
    rs.StructureSetROISequence.append(twin)
    _save(rs, path)
    return path


def _contour_off_grid(case: Path) -> Path:
    path = case / "CT" / "mask" / "RS.dcm"
    rs = _load(path)
    contour = rs.ROIContourSequence[0].ContourSequence[0]
    points = np.array(contour.ContourData, dtype=float).reshape(-1, 3) + [0.0, 0.0, 500.0]
    contour.ContourData = [f"{v:.3f}" for v in points.ravel()]
    _save(rs, path)
    return path


def _truncated(case: Path) -> Path:
    path = _slices(case)[10]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage(case: Path) -> Path:
    path = case / "CT" / "image" / "zz_garbage.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _missing_slice(case: Path) -> Path:
    slices = _slices(case)
    slices[20].unlink()
    return slices[19]


def _uneven(case: Path) -> Path:
    path = _slices(case)[20]
    position = [float(v) for v in _load(path).ImagePositionPatient]
    _edit(path, ImagePositionPatient=[position[0], position[1], position[2] + 0.4 * 3.27])
    return path


def _duplicate(case: Path) -> Path:
    slices = _slices(case)
    _edit(slices[21], ImagePositionPatient=_load(slices[20]).ImagePositionPatient)
    return slices[21] if slices[21].name > slices[20].name else slices[20]


def _mr(case: Path) -> Path:
    slices = sorted((case / "CT" / "image").glob("*.dcm"))
    for path in slices:
        _edit(path, Modality="MR")
    return slices[0]


def _oblique(case: Path) -> Path:
    slices = _slices(case)
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))  # rotated 10 degrees about the patient's z axis
    for path in slices:
        _edit(path, ImageOrientationPatient=[c, s, 0.0, -s, c, 0.0])
    return min(slices, key=lambda p: float(_load(p).ImagePositionPatient[2]))


BAD_INPUTS: list[tuple[str, Callable[[Path], Path], dict[int, str], str]] = [
    ("missing ROI", lambda case: case / "CT" / "mask" / "RS.dcm", {1: "GTV_Mass", 2: "SpinalCord"},
     r"no ROI matches label\(s\) 'SpinalCord'; ROIs present: \['GTV_Mass_CT'\]"),
    ("empty ROI", _empty_roi, GTV["labels"], "ROI 'GTV_Mass_CT' is empty"),
    ("foreign series", _foreign_series, GTV["labels"],
     r"references series 1\.2\.3\.4, which is not under .*series present: \['1\."),
    ("duplicate ROI name", _duplicate_roi_name, GTV["labels"], "2 ROIs are named 'GTV_Mass_CT'"),
    ("contour off grid", _contour_off_grid, GTV["labels"], "ROI 'GTV_Mass_CT' has a contour at z=.* off the CT grid"),
    ("truncated slice", _truncated, GTV["labels"], "cannot read pixel data, file truncated or corrupt"),
    ("garbage .dcm", _garbage, GTV["labels"], "not a DICOM file or corrupt|cannot read DICOM header"),
    ("missing slice", _missing_slice, GTV["labels"], r"missing slice\(s\) between z=-1\d\d\.\d+ and z=-1\d\d\.\d+ mm"),
    ("uneven spacing", _uneven, GTV["labels"], r"uneven slice spacing, found spacings \[1\.962, 3\.27, 4\.578\] mm"),
    ("duplicate slice", _duplicate, GTV["labels"], "duplicate slice position"),
    ("non-CT modality", _mr, GTV["labels"], "modality MR; hqctf reads CT"),
    ("oblique series", _oblique, GTV["labels"], r"oblique ImageOrientationPatient \[0\.9848, 0\.1736"),
]


@pytest.mark.parametrize(("damage", "labels", "message"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_one_line_error_naming_the_file(
    case_copy: Path, damage: Callable[[Path], Path], labels: dict[int, str], message: str
) -> None:
    offending = damage(case_copy)
    with pytest.raises(DataError, match=message) as error:
        source = DicomSource(case_copy, labels=labels, aliases=GTV["aliases"])
        source.read(source.case_ids()[0])
    text = str(error.value)
    assert text.startswith(f"{offending}:") and "\n" not in text


def test_folder_index_skips_unchanged_files(case_copy: Path, tmp_path: Path, monkeypatch) -> None:
    index = tmp_path / "index.json"
    first = DicomSource(case_copy, labels=GTV["labels"], aliases=GTV["aliases"], index_file=index)
    expected = first.files(COPIED)
    reads: list[str] = []
    original = pydicom.dcmread

    def counting(path, *args, **kwargs):
        reads.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr("hqctf.data.dicom.pydicom.dcmread", counting)
    assert DicomSource(case_copy, labels=GTV["labels"], aliases=GTV["aliases"], index_file=index).files(COPIED) == expected
    assert reads == []  # unchanged files: nothing read
    changed = sorted((case_copy / "CT" / "image").glob("*.dcm"))[5]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    DicomSource(case_copy, labels=GTV["labels"], aliases=GTV["aliases"], index_file=index).case_ids()
    assert reads == [changed.name]  # only the changed file is read again
