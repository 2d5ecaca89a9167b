"""The embedded OpenKBP sample and the slice reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hqctf.data import DataError, list_cases, load_slices, read_labels, sample_dataset_dir

ORGANS = ["Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus", "Larynx", "Mandible"]


def _copy_case(tmp_path: Path, case: str = "pt_4") -> Path:
    src, dst = sample_dataset_dir(), tmp_path / "ds"
    for sub in ("imagesTr", "labelsTr"):
        (dst / sub).mkdir(parents=True)
    shutil.copy(src / "dataset.json", dst / "dataset.json")
    shutil.copy(src / "imagesTr" / f"{case}_0000.nii.gz", dst / "imagesTr")
    shutil.copy(src / "labelsTr" / f"{case}.nii.gz", dst / "labelsTr")
    return dst


def test_embedded_sample_has_six_complete_cases() -> None:
    root = sample_dataset_dir()
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 6
    assert read_labels(root) == ["background", *ORGANS]
    cases = list_cases(root)
    assert len(cases) == 6
    assert (root / "LICENSE").is_file() and "OpenKBP" in (root / "README.md").read_text()
    for case in cases:
        label = np.asarray(nib.load(root / "labelsTr" / f"{case}.nii.gz").dataobj)
        image = nib.load(root / "imagesTr" / f"{case}_0000.nii.gz")
        assert image.shape == label.shape
        assert set(np.unique(label).tolist()) == set(range(len(ORGANS) + 1))


def test_load_slices_shapes_values_and_foreground() -> None:
    images, labels, names = load_slices(sample_dataset_dir(), slices_per_case=4)
    assert images.shape == (24, 1, 128, 128) and images.dtype == np.float32
    assert labels.shape == (24, 128, 128) and labels.dtype == np.int64
    assert names == ["background", *ORGANS]
    assert set(np.unique(labels).tolist()) <= set(range(len(names)))
    assert (labels.reshape(len(labels), -1) > 0).any(axis=1).all()
    assert -1.0 <= images.min() and images.max() <= 1.0 and np.isfinite(images).all()


def test_load_slices_resizes_and_selects_cases() -> None:
    images, labels, _ = load_slices(sample_dataset_dir(), cases=["pt_13"], slices_per_case=3, size=64)
    assert images.shape == (3, 1, 64, 64) and labels.shape == (3, 64, 64)
    all_fg, _, _ = load_slices(sample_dataset_dir(), cases=["pt_13"], slices_per_case=None)
    assert len(all_fg) == 99  # pt_13 has foreground on 99 axial slices


def test_load_slices_is_deterministic_for_a_seed() -> None:
    a = load_slices(sample_dataset_dir(), cases=["pt_4", "pt_22"], slices_per_case=5, seed=3)
    b = load_slices(sample_dataset_dir(), cases=["pt_4", "pt_22"], slices_per_case=5, seed=3)
    c = load_slices(sample_dataset_dir(), cases=["pt_4", "pt_22"], slices_per_case=5, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def _one_line_error(excinfo: pytest.ExceptionInfo[DataError], path: Path) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    assert isinstance(excinfo.value, ValueError)


def test_missing_label_file_names_it(tmp_path: Path) -> None:
    root = _copy_case(tmp_path)
    missing = root / "labelsTr" / "pt_4.nii.gz"
    missing.unlink()
    with pytest.raises(DataError, match="label file missing") as excinfo:
        load_slices(root)
    _one_line_error(excinfo, missing)


def test_shape_mismatch_names_the_file(tmp_path: Path) -> None:
    root = _copy_case(tmp_path)
    path = root / "labelsTr" / "pt_4.nii.gz"
    label = nib.load(path)
    cropped = np.asarray(label.dataobj)[:, :, :100]
    nib.save(nib.Nifti1Image(cropped, label.affine, label.header), path)
    with pytest.raises(DataError, match="does not match image shape") as excinfo:
        load_slices(root)
    _one_line_error(excinfo, path)


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_slices(tmp_path / "nowhere")
    _one_line_error(excinfo, tmp_path / "nowhere")
