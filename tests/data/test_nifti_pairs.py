"""NiftiPairSource on the real TotalSegmentator example and on generated image/label folders."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hqctf.data.errors import DataError
from hqctf.data.nifti import write_nifti
from hqctf.data.nifti_pairs import NiftiPairSource, nifti_case_id

#: A few TotalSegmentator (117-class model) label values that occur in the example.
TOTALSEG = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "totalseg_example"
    return folder / "example_ct_sm.nii.gz", folder / "example_seg.nii.gz"


def test_totalseg_values_found(totalseg: tuple[Path, Path]) -> None:
    source = NiftiPairSource([totalseg])
    assert source.format == "nifti" and source.root == totalseg[0].parent
    assert source.case_ids() == ["example_ct_sm"] and source.files("example_ct_sm") == list(totalseg)
    assert {v: source.labels[v] for v in (1, 2, 3, 117)} == {1: "label_1", 2: "label_2", 3: "label_3", 117: "label_117"}
    assert 12 not in source.labels  # only the values that occur are named
    case = source.read("example_ct_sm")
    assert case.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert case.image.shape == case.label.shape == (122, 101, 30) and case.image.dtype == np.float32
    np.testing.assert_allclose(case.affine, nib.load(totalseg[0]).affine)
    assert case.unknown == frozenset()
    assert np.count_nonzero(case.label == 5) == 38634  # liver voxels in the file


@pytest.mark.parametrize(("absent", "unknown_12"), [("unknown", True), ("background", False)])
def test_totalseg_named_labels(totalseg: tuple[Path, Path], absent: str, unknown_12: bool) -> None:
    labels = {v: f"class_{v}" for v in range(1, 118)} | TOTALSEG
    case = NiftiPairSource([totalseg], labels=labels, absent=absent).read("example_ct_sm")
    assert {v: case.known[v] for v in TOTALSEG} == TOTALSEG
    assert (12 in case.unknown) is unknown_12  # class 12 does not occur in the example
    assert case.volumes_cc()["liver"] == pytest.approx(38634 * 27 / 1000)


def test_labels_missing_a_value(totalseg: tuple[Path, Path]) -> None:
    with pytest.raises(DataError, match=r"label values \[4, 6, .*\] are not among the structures \[0, 1, 2, 3, 5\]") as err:
        NiftiPairSource([totalseg], labels=TOTALSEG).read("example_ct_sm")
    assert str(err.value).startswith(f"{totalseg[1]}: ")


def test_image_without_label(totalseg: tuple[Path, Path]) -> None:
    source = NiftiPairSource([(totalseg[0], None)])
    assert source.labels == {} and source.read("example_ct_sm").label is None


@pytest.mark.parametrize(
    ("name", "case_id"),
    [("pt_1_0000.nii.gz", "pt_1"), ("scan.nii", "scan"), ("x_0000_0000.nii.gz", "x_0000"), ("ct_00001.nii.gz", "ct_00001")],
)
def test_case_id(name: str, case_id: str) -> None:
    assert nifti_case_id(Path("some/folder") / name) == case_id


def make_folder(root: Path, cases: dict[str, int | None], labels: bool = True) -> Path:
    """``root/images/<name>`` and ``root/labels/<id>.nii.gz`` holding label value ``cases[name]`` (None: no label)."""
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    for name, value in cases.items():
        write_nifti(root / "images" / name, np.full((5, 4, 3), 40, np.int16), affine)
        if labels and value is not None:
            label = np.zeros((5, 4, 3), np.uint8)
            label[0, 0, 0] = value
            write_nifti(root / "labels" / f"{nifti_case_id(name)}.nii.gz", label, affine)
    return root


def test_from_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"b_0000.nii.gz": 2, "a.nii.gz": 1})
    source = NiftiPairSource.from_folder(root)
    assert source.root == root and source.case_ids() == ["a", "b"]
    assert source.labels == {1: "label_1", 2: "label_2"}
    a = source.read("a")
    assert a.spacing == pytest.approx((1.5, 1.5, 4.0)) and a.unknown == {2}  # label_2 not in case a: not contoured
    named = NiftiPairSource.from_folder(root, labels={0: "bg", 1: "lung", 2: "heart"}, absent="background")
    assert named.labels == {1: "lung", 2: "heart"} and named.read("a").unknown == frozenset()


def test_from_folder_without_labels_folder(tmp_path: Path) -> None:
    source = NiftiPairSource.from_folder(make_folder(tmp_path, {"a.nii.gz": 1}, labels=False))
    assert source.read("a").label is None


@pytest.mark.parametrize(
    ("setup", "named", "fragment"),
    [
        (lambda r: r.mkdir(exist_ok=True), "images", "images folder not found"),
        (lambda r: (r / "images").mkdir(), "images", "no .nii.gz or .nii images"),
        (lambda r: make_folder(r, {"a.nii.gz": 1, "b.nii.gz": None}), "labels/b.nii.gz", "label file not found for image b.nii.gz"),
    ],
    ids=["no images folder", "empty images folder", "missing label"],
)
def test_from_folder_errors(tmp_path: Path, setup, named: str, fragment: str) -> None:
    setup(tmp_path)
    with pytest.raises(DataError, match=fragment) as err:
        NiftiPairSource.from_folder(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / named}: ")


def test_duplicate_case_ids(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"a.nii.gz": 1, "a_0000.nii.gz": 1})
    with pytest.raises(DataError, match="case id 'a' is also the id of"):
        NiftiPairSource([(root / "images/a.nii.gz", None), (root / "images/a_0000.nii.gz", None)])


def test_unknown_case(tmp_path: Path) -> None:
    source = NiftiPairSource.from_folder(make_folder(tmp_path, {"a.nii.gz": 1}))
    with pytest.raises(DataError, match="no case 'zz'"):
        source.read("zz")
