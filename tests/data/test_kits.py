"""KiTSSource on generated KiTS19/KiTS21 folders (real KiTS volumes are not available here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hqctf.data.errors import DataError
from hqctf.data.kits import KiTSSource
from hqctf.data.nifti import write_nifti

SHAPE = (24, 20, 16)  # as stored: KiTS19 puts the superior-inferior axis first
#: KiTS19's affine: array axis 0 runs along world Z (3 mm slices), axis 1 along -Y, axis 2 along -X (0.78 mm).
KITS19_AFFINE = np.array([[0, 0, -0.78, 0], [0, -0.78, 0, 0], [-3.0, 0, 0, 0], [0, 0, 0, 1]])
SEGMENTATION = {19: "segmentation.nii.gz", 21: "aggregated_MAJ_seg.nii.gz"}


def make_volume(seed: int, values: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An int16 HU image and a label map holding each of ``values`` in a box of its own."""
    image = np.random.default_rng(seed).integers(-1000, 1500, SHAPE).astype(np.int16)
    label = np.zeros(SHAPE, np.uint8)
    for i, value in enumerate(values):
        label[2 + 4 * i : 5 + 4 * i, 3:8, 4 : 6 + i] = value
    return image, label


def make_kits(root: Path, version: int, cases: dict[str, tuple[int, ...] | None]) -> Path:
    """KiTS case folders; a case's values None writes no segmentation (a test case)."""
    for seed, (case_id, values) in enumerate(cases.items()):
        image, label = make_volume(seed, values or ())
        write_nifti(root / case_id / "imaging.nii.gz", image, KITS19_AFFINE)
        if values is not None:
            write_nifti(root / case_id / SEGMENTATION[version], label, KITS19_AFFINE)
    return root


LAYOUTS = [
    # version, structures, regions, values drawn in the segmentation
    (19, {1: "kidney", 2: "tumor"}, {"kidney_and_tumor": (1, 2), "tumor": (2,)}, (1, 2)),
    (21, {1: "kidney", 2: "tumor", 3: "cyst"}, {"kidney_and_masses": (1, 2, 3), "masses": (2, 3), "tumor": (2,)}, (1, 2, 3)),
]


@pytest.mark.parametrize(("version", "structures", "regions", "values"), LAYOUTS, ids=["kits19", "kits21"])
@pytest.mark.parametrize("given", [False, True], ids=["detected", "given"])
def test_layout_version_and_regions(tmp_path: Path, version: int, structures: dict, regions: dict, values: tuple, given: bool) -> None:
    root = make_kits(tmp_path / "data", version, {"case_00000": values, "case_00001": values[:1], "case_00210": None})
    source = KiTSSource(root, version=version if given else None)
    assert (source.version, source.format) == (version, f"kits{version}")
    assert source.labels == structures and source.regions == regions
    assert source.case_ids() == ["case_00000", "case_00001", "case_00210"]
    assert source.files("case_00000") == [root / "case_00000/imaging.nii.gz", root / "case_00000" / SEGMENTATION[version]]

    _, stored = make_volume(0, values)
    case = source.read("case_00000")
    assert case.structures == structures and case.regions == regions and case.unknown == frozenset()
    for name, region_values in regions.items():
        mask = np.isin(case.label, region_values)
        assert mask.sum() == np.isin(stored, region_values).sum() > 0, name

    only_kidney = source.read("case_00001")
    assert only_kidney.unknown == frozenset() and set(np.unique(only_kidney.label)) == {0, 1}  # tumour absent, not unknown
    test_case = source.read("case_00210")
    assert test_case.label is None and source.files("case_00210") == [root / "case_00210/imaging.nii.gz"]


def test_kits19_axes_reordered_to_xyz(tmp_path: Path) -> None:
    root = make_kits(tmp_path / "data", 19, {"case_00007": (1, 2)})
    case = KiTSSource(root).read("case_00007")
    image, label = make_volume(0, (1, 2))
    assert case.image.shape == (16, 20, 24) and case.image.dtype == np.float32
    assert case.spacing == pytest.approx((0.78, 0.78, 3.0))
    np.testing.assert_array_equal(case.image, image.transpose(2, 1, 0))
    np.testing.assert_array_equal(case.label, label.transpose(2, 1, 0))
    # every voxel keeps its world position
    for stored_index in [(0, 0, 0), (5, 7, 11), (23, 19, 15)]:
        new_index = stored_index[::-1]
        np.testing.assert_allclose(case.affine @ [*new_index, 1], KITS19_AFFINE @ [*stored_index, 1])


def test_single_case_folder(tmp_path: Path) -> None:
    root = make_kits(tmp_path, 21, {"case_00003": (1, 3)})
    source = KiTSSource(root / "case_00003")
    assert source.case_ids() == ["case_00003"] and source.version == 21
    assert set(np.unique(source.read("case_00003").label)) == {0, 1, 3}


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda r: make_kits(r, 19, {"case_00000": None}), "cannot tell KiTS19 from KiTS21"),
        (lambda r: r.mkdir(), "no case_XXXXX folders"),
        (lambda r: None, "KiTS folder not found"),
    ],
    ids=["no segmentation", "empty folder", "missing folder"],
)
def test_open_errors(tmp_path: Path, setup, fragment: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DataError, match=fragment) as err:
        KiTSSource(root)
    assert str(err.value).startswith(f"{root}: ")


@pytest.mark.parametrize(
    ("label", "affine", "fragment"),
    [
        (np.full(SHAPE, 4, np.uint8), KITS19_AFFINE, r"label values \[4\] are not among"),
        (np.zeros(SHAPE, np.uint8), np.diag([0.78, 0.78, 3.0, 1.0]), "label affine differs"),
        (np.zeros(SHAPE[::-1], np.uint8), KITS19_AFFINE, "label shape"),
    ],
    ids=["stray value", "affine mismatch", "shape mismatch"],
)
def test_read_errors_name_the_segmentation(tmp_path: Path, label: np.ndarray, affine: np.ndarray, fragment: str) -> None:
    root = make_kits(tmp_path / "data", 19, {"case_00000": (1,)})
    segmentation = root / "case_00000" / SEGMENTATION[19]
    write_nifti(segmentation, label, affine)
    with pytest.raises(DataError, match=fragment) as err:
        KiTSSource(root).read("case_00000")
    assert str(err.value).startswith(f"{segmentation}: ")


def test_missing_image_is_named(tmp_path: Path) -> None:
    root = make_kits(tmp_path / "data", 21, {"case_00000": (1,), "case_00001": (1,)})
    (root / "case_00001/imaging.nii.gz").unlink()
    source = KiTSSource(root)
    with pytest.raises(DataError, match="file not found") as err:
        source.read("case_00001")
    assert str(err.value).startswith(f"{root / 'case_00001/imaging.nii.gz'}: ")
