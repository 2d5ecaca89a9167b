"""`write_rtstruct` on a real IBSI CT series, holes written both ways: round trip through the project's reader,
rt-utils and plastimatch, the mandatory RTSTRUCT attributes and references, and bad input."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from hqctf.data.dicom import LPS_TO_RAS, DicomSource
from hqctf.infer import rtstruct
from hqctf.infer.rtstruct import HOLES, RT_STRUCTURE_SET_STORAGE, write_rtstruct

# The IBSI CT's StudyID has 17 characters (SH allows 16); the RTSTRUCT copies it as it is.
pytestmark = pytest.mark.filterwarnings("ignore:The value length:UserWarning")

CASE = "STS_019"  # 47 slices of 134 rows x 136 columns
#: The reader's GTV plus synthetic structures: a ring with a hole (and an island in the hole on one slice), a
#: square with many holes (side by side, stacked, one wrapped in another, one holding an island with a hole holding
#: an island, diagonal contacts), two islands on one slice (one cut by the image edge), random noise on a few
#: slices, and a structure left empty.
NAMES = {1: "GTV_Mass", 2: "Parotid_L", 3: "ptv_boost", 4: "Brainstem"}
FILLED = {1: "GTV_Mass", 2: "Parotid_L", 3: "ptv_boost"}
RING_SLICES, HOLE_ISLAND_SLICE, HOLES_SLICE, ISLANDS_SLICE, NOISE_SLICES = range(5, 10), 7, 30, 20, range(40, 44)
#: Contours of structure 2 on `HOLES_SLICE`: 5 regions (the square, the island, the island in its hole and two
#: islands touching diagonally) and 11 holes.
HOLES_SLICE_CONTOURS = {"keyhole": 5, "nested": 16}

MANDATORY = {  # sequence path ("" = top level) -> keywords every item must hold
    "": ("SpecificCharacterSet", "InstanceCreationDate", "InstanceCreationTime", "SOPClassUID", "SOPInstanceUID",
         "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber", "Modality", "SeriesInstanceUID", "SeriesNumber",
         "OperatorsName", "Manufacturer", "FrameOfReferenceUID", "StructureSetLabel", "StructureSetDate",
         "StructureSetTime", "ReferencedFrameOfReferenceSequence", "StructureSetROISequence", "ROIContourSequence",
         "RTROIObservationsSequence"),
    "ReferencedFrameOfReferenceSequence": ("FrameOfReferenceUID", "RTReferencedStudySequence"),
    "ReferencedFrameOfReferenceSequence.RTReferencedStudySequence": (
        "ReferencedSOPClassUID", "ReferencedSOPInstanceUID", "RTReferencedSeriesSequence"),
    "ReferencedFrameOfReferenceSequence.RTReferencedStudySequence.RTReferencedSeriesSequence": (
        "SeriesInstanceUID", "ContourImageSequence"),
    "ReferencedFrameOfReferenceSequence.RTReferencedStudySequence.RTReferencedSeriesSequence.ContourImageSequence": (
        "ReferencedSOPClassUID", "ReferencedSOPInstanceUID"),
    "StructureSetROISequence": ("ROINumber", "ReferencedFrameOfReferenceUID", "ROIName", "ROIGenerationAlgorithm"),
    "ROIContourSequence": ("ROIDisplayColor", "ReferencedROINumber"),
    "ROIContourSequence.ContourSequence": (
        "ContourImageSequence", "ContourGeometricType", "NumberOfContourPoints", "ContourData"),
    "ROIContourSequence.ContourSequence.ContourImageSequence": ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID"),
    "RTROIObservationsSequence": ("ObservationNumber", "ReferencedROINumber", "RTROIInterpretedType", "ROIInterpreter"),
}


@dataclass(frozen=True)
class Written:
    """The RTSTRUCT written beside a copy of the CT series, and what went in."""

    root: Path
    ct_files: list[Path]
    label: np.ndarray
    path: Path
    empty: list[str]
    holes: str


@pytest.fixture(scope="module", params=HOLES)
def written(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Written:
    source = shared_data / "ibsi_dicom" / CASE
    gtv = DicomSource(source, labels={1: "GTV_Mass_CT"}).read(CASE).label
    root = tmp_path_factory.mktemp("rtstruct") / CASE
    shutil.copytree(source / "CT" / "image", root / "image")
    ct_files = sorted((root / "image").glob("*.dcm"))
    label = _synthetic(gtv)
    path = root / "RS_hqctf.dcm"
    empty = write_rtstruct(label, ct_files, NAMES, path, holes=request.param)
    return Written(root, ct_files, label, path, empty, request.param)


@pytest.fixture(scope="module")
def ds(written: Written) -> Dataset:
    return pydicom.dcmread(written.path)


@pytest.fixture(scope="module")
def ct(written: Written) -> list[Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in written.ct_files]


def _synthetic(gtv: np.ndarray) -> np.ndarray:
    """The reader's GTV (X 52..83, Y 52..81) as value 1, with structures 2 and 3 drawn away from it."""
    label = gtv.copy()
    x, y = np.meshgrid(np.arange(label.shape[0]), np.arange(label.shape[1]), indexing="ij")

    def disk(cx: int, cy: int, r: float) -> np.ndarray:
        return (x - cx) ** 2 + (y - cy) ** 2 <= r**2

    for k in RING_SLICES:
        label[:, :, k][disk(25, 25, 12) & ~disk(25, 25, 5)] = 2
    label[:, :, HOLE_ISLAND_SLICE][disk(25, 25, 2)] = 2
    plane = label[:, :, HOLES_SLICE]
    plane[88:132, 4:48] = 2
    for left in (92, 98, 104):  # side by side, on the same rows
        plane[left : left + 4, 8:12] = 0
    plane[92:98, 16:19] = plane[94:98, 21:25] = 0  # stacked, with the same right edge
    plane[110:127, 8:11] = plane[124:127, 8:25] = plane[118:122, 14:18] = 0  # an L around a small hole
    plane[100:123, 28:45] = 0  # a hole with an island, which has a hole with an island
    plane[104:119, 31:42], plane[108:114, 34:38], plane[110:112, 35:37] = 2, 0, 2
    plane[92, 30] = plane[93, 31] = 0  # one hole of two voxels touching at a corner
    plane[92:97, 36:41], plane[93, 37], plane[94, 38] = 0, 2, 2  # two islands touching at a corner
    label[:, :, ISLANDS_SLICE][disk(100, 110, 6) | disk(118, 2, 4)] = 3  # the second is cut by row 0
    rng = np.random.default_rng(0)
    for k, density in zip(NOISE_SLICES, (0.3, 0.5, 0.6, 0.7)):
        label[:, :, k][:48, 86:134][rng.random((48, 48)) < density] = 3
    structures = (*RING_SLICES, HOLES_SLICE, ISLANDS_SLICE, *NOISE_SLICES)
    assert not np.any(label[..., [k for k in range(label.shape[2]) if k not in structures]] > 1)
    return label


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.count_nonzero(a & b)) / float(np.count_nonzero(a) + np.count_nonzero(b))


def _items(ds: Dataset, path: str) -> list[Dataset]:
    """All items reached along a dotted sequence path ("" = the dataset itself)."""
    items = [ds]
    for keyword in filter(None, path.split(".")):
        items = [item for parent in items for item in parent.get(keyword, [])]
    return items


def test_reader_gets_the_label_back(written: Written) -> None:
    back = DicomSource(written.root, labels=FILLED).read(CASE)
    for value in FILLED:
        assert _dice(written.label == value, back.label == value) >= 0.98, FILLED[value]
    np.testing.assert_array_equal(back.label, written.label)  # voxel for voxel, in fact


def test_rt_utils_gets_the_label_back(written: Written, rt_utils_masks) -> None:
    lps = LPS_TO_RAS @ DicomSource(written.root, labels=FILLED).read(CASE).affine
    masks, usable = rt_utils_masks(written.root / "image", written.path, lps, written.label.shape,
                                   list(FILLED.values()))
    assert not np.any(written.label[usable:, :, :]) and not np.any(written.label[:, usable:, :])
    for value, name in FILLED.items():
        np.testing.assert_array_equal(masks[name], written.label == value, err_msg=name)


@pytest.mark.parametrize("xor", [False, True], ids=["or", "xor"])
def test_plastimatch_gets_the_label_back(written: Written, plastimatch_masks, xor: bool) -> None:
    """plastimatch fills each contour and ORs them by default, ``--xor-contours`` reads them even-odd: keyholes
    come back voxel for voxel either way, nested holes only even-odd (OR fills them in)."""
    affine = DicomSource(written.root, labels=FILLED).read(CASE).affine
    masks = plastimatch_masks(written.root / "image", written.path, affine, written.label.shape,
                              list(FILLED.values()), xor)
    for value, name in FILLED.items():
        if written.holes == "nested" and not xor and name != "GTV_Mass":  # the GTV has no hole
            assert _dice(written.label == value, masks[name]) < 0.99, name
            assert np.all(masks[name][written.label == value]), name
        else:
            np.testing.assert_array_equal(masks[name], written.label == value, err_msg=name)


def test_dciodvfy_finds_no_error_of_its_own(written: Written, dicom_valid) -> None:
    dicom_valid(written.path, written.ct_files[0])  # the CT's own errors (a 17-character StudyID) are copied


def test_dciodvfy_finds_a_missing_mandatory_attribute(written: Written, dicom_valid, tmp_path: Path) -> None:
    ds = pydicom.dcmread(written.path)
    del ds.StructureSetLabel, ds.StructureSetROISequence[0].ROIName
    ds.save_as(tmp_path / "RS_broken.dcm")
    with pytest.raises(AssertionError, match="Structure Set Label|StructureSetLabel"):
        dicom_valid(tmp_path / "RS_broken.dcm", written.ct_files[0])


@pytest.mark.parametrize("path", MANDATORY)
def test_mandatory_attributes(ds: Dataset, path: str) -> None:
    items = _items(ds, path)
    assert items, f"no items at {path or 'top level'}"
    for keyword in MANDATORY[path]:
        assert all(keyword in item for item in items), f"{path or 'top level'}: {keyword} missing"


def test_file_meta_and_identity(ds: Dataset, ct: list[Dataset]) -> None:
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian  # Contour Data can exceed 64 KiB
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == RT_STRUCTURE_SET_STORAGE
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "RTSTRUCT" and ds.Manufacturer == "hqctf"
    assert ds.SeriesInstanceUID != ct[0].SeriesInstanceUID
    assert ds.SOPInstanceUID not in {c.SOPInstanceUID for c in ct}
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "FrameOfReferenceUID"):
        assert ds[keyword].value == ct[0][keyword].value, keyword
    assert [r.ROIGenerationAlgorithm for r in ds.StructureSetROISequence] == ["AUTOMATIC"] * len(NAMES)


def test_references_the_ct_series(ds: Dataset, ct: list[Dataset]) -> None:
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    study = frame.RTReferencedStudySequence[0]
    series = study.RTReferencedSeriesSequence[0]
    assert frame.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
    assert {r.ReferencedFrameOfReferenceUID for r in ds.StructureSetROISequence} == {ct[0].FrameOfReferenceUID}
    assert study.ReferencedSOPInstanceUID == ct[0].StudyInstanceUID
    assert series.SeriesInstanceUID == ct[0].SeriesInstanceUID
    listed = [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in series.ContourImageSequence]
    assert sorted(listed) == sorted((c.SOPClassUID, c.SOPInstanceUID) for c in ct)
    z_of = {c.SOPInstanceUID: float(c.ImagePositionPatient[2]) for c in ct}  # axial series: the normal is +z
    for contour in _items(ds, "ROIContourSequence.ContourSequence"):
        (image,) = contour.ContourImageSequence
        points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
        assert len(points) == contour.NumberOfContourPoints >= 3
        np.testing.assert_allclose(points[:, 2], z_of[image.ReferencedSOPInstanceUID], atol=1e-3)


def test_contour_data_fits_decimal_strings(written: Written) -> None:
    ds = pydicom.dcmread(written.path)
    contours = _items(ds, "ROIContourSequence.ContourSequence")
    assert contours
    for contour in contours:
        raw = contour.get_item("ContourData").value
        values = raw.split(b"\\") if isinstance(raw, bytes) else [str(v).encode() for v in raw]
        assert max(len(v) for v in values) <= 16


def test_topology_and_interpreted_types(written: Written, ds: Dataset, ct: list[Dataset]) -> None:
    types = {o.ReferencedROINumber: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    assert types == {1: "GTV", 2: "ORGAN", 3: "PTV", 4: "ORGAN"}
    assert all(o.ROIInterpreter == "" for o in ds.RTROIObservationsSequence)
    z_to_slice = {round(z, 2): k for k, z in enumerate(sorted(float(c.ImagePositionPatient[2]) for c in ct))}
    per_slice: dict[tuple[int, int], int] = {}
    for roi in ds.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            key = (int(roi.ReferencedROINumber), z_to_slice[round(float(contour.ContourData[2]), 2)])
            per_slice[key] = per_slice.get(key, 0) + 1
    nested = written.holes == "nested"
    assert [per_slice[(2, k)] for k in RING_SLICES] == [1 + nested + (k == HOLE_ISLAND_SLICE) for k in RING_SLICES]
    assert per_slice[(2, HOLES_SLICE)] == HOLES_SLICE_CONTOURS[written.holes]
    assert per_slice[(3, ISLANDS_SLICE)] == 2


def test_empty_structure_is_listed_and_returned(written: Written, ds: Dataset) -> None:
    assert written.empty == ["Brainstem"]
    assert [r.ROIName for r in ds.StructureSetROISequence] == list(NAMES.values())
    rois = {r.ReferencedROINumber: r for r in ds.ROIContourSequence}
    assert sorted(rois) == [1, 2, 3, 4]
    assert "ContourSequence" not in rois[4] and all("ContourSequence" in rois[v] for v in FILLED)


def test_colour_and_type_overrides(written: Written, tmp_path: Path, dicom_valid) -> None:
    out = tmp_path / "RS.dcm"
    write_rtstruct(written.label, written.ct_files, NAMES, out, series_description="second opinion",
                   colours={2: (1, 2, 3)}, interpreted_types={1: "CTV", 4: "AVOIDANCE"})
    dicom_valid(out, written.ct_files[0])
    ds = pydicom.dcmread(out)
    assert ds.SeriesDescription == "second opinion"
    assert list(ds.ROIContourSequence[1].ROIDisplayColor) == [1, 2, 3]
    colours = [tuple(r.ROIDisplayColor) for r in ds.ROIContourSequence]
    assert len(set(colours)) == len(colours)
    types = [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence]
    assert types == ["CTV", "ORGAN", "PTV", "AVOIDANCE"]


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_label_shape_mismatch_names_the_shape(written: Written, out_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"label shape \(136, 134, 46\) does not match .*\(136, 134, 47\)"):
        write_rtstruct(written.label[:, :, 1:], written.ct_files, NAMES, out_dir / "RS.dcm")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("structures, match", [
    ({1: "GTV_Mass", 2: "Parotid_L"}, r"label values \[3\] are not in structures"),
    ({1: "GTV_Mass", 2: "GTV_Mass", 3: "ptv_boost"}, "unique names"),
])
def test_bad_structures(written: Written, out_dir: Path, structures: dict[int, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_rtstruct(written.label, written.ct_files, structures, out_dir / "RS.dcm")
    assert list(out_dir.iterdir()) == []


def test_files_of_two_series_are_refused(written: Written, shared_data: Path, out_dir: Path) -> None:
    other = sorted((shared_data / "ibsi_dicom" / "STS_008" / "CT" / "image").glob("*.dcm"))
    with pytest.raises(ValueError, match="2 series"):
        write_rtstruct(written.label, written.ct_files + other, NAMES, out_dir / "RS.dcm")
    assert list(out_dir.iterdir()) == []


def test_failed_write_leaves_no_file(written: Written, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(rtstruct.pydicom, "dcmwrite", fail)
    with pytest.raises(OSError, match="disk full"):
        write_rtstruct(written.label, written.ct_files, NAMES, out_dir / "RS.dcm")
    assert list(out_dir.iterdir()) == []


def test_contours_longer_than_64_kib_stay_numbers(written: Written, out_dir: Path, dicom_valid) -> None:
    """A contour whose Contour Data needs more than 65,534 bytes (a serpentine with ~9,000 points) is still read
    as numbers by pydicom and rt-utils: explicit VR would have to fall back to UN there, so hqctf writes implicit VR."""
    from rt_utils import RTStructBuilder

    label = np.zeros_like(written.label)
    k, rng = 20, np.random.default_rng(0)
    plane = label[:, :, k]
    for i, top in enumerate(range(4, 126, 5)):  # 3-row bars, joined alternately at the ends into one snake ...
        plane[top : top + 3, 4:132] = 1
        plane[top : top + 8, (4, 131)[i % 2]] = 1
        plane[top, 5:131][rng.random(126) < 0.5] = 0  # ... with random notches along both edges
        plane[top + 2, 5:131][rng.random(126) < 0.5] = 0
    path = out_dir / "RS_long.dcm"
    write_rtstruct(label, written.ct_files, {1: "GTV_Mass"}, path, holes=written.holes)
    dicom_valid(path, written.ct_files[0])
    ds = pydicom.dcmread(path)
    contours = ds.ROIContourSequence[0].ContourSequence
    longest = max(contours, key=lambda c: int(c.NumberOfContourPoints))
    assert int(longest.NumberOfContourPoints) * 3 * 6 > 65534  # > 6 bytes a coordinate, with separators
    for contour in contours:
        values = [float(v) for v in contour.ContourData]
        assert len(values) == 3 * int(contour.NumberOfContourPoints)
    shutil.copy(path, written.root / "image" / ".." / "RS_long.dcm")
    rt = RTStructBuilder.create_from(dicom_series_path=str(written.root / "image"), rt_struct_path=str(path))
    mask = rt.get_roi_mask_by_name("GTV_Mass")
    assert mask.any()
