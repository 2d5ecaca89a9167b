"""`write_seg` on a real IBSI CT series: read back through `DicomSource` (highdicom) voxel for voxel, CT series
referenced, dciodvfy adds no error to the CT's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_rtstruct import CASE, FILLED, NAMES, _synthetic

from hqctf.data.dicom import DicomSource
from hqctf.infer.seg import write_seg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the CT's 17-character StudyID, copied as it is


def test_seg_reads_back_and_validates(shared_data: Path, tmp_path: Path, dicom_valid) -> None:
    source = shared_data / "ibsi_dicom" / CASE
    label = _synthetic(DicomSource(source, labels={1: "GTV_Mass_CT"}).read(CASE).label)
    shutil.copytree(source / "CT" / "image", tmp_path / CASE / "image")
    ct_files = sorted((tmp_path / CASE / "image").glob("*.dcm"))
    path = tmp_path / CASE / "SEG.dcm"
    assert write_seg(label, ct_files, NAMES, path) == ["Brainstem"]
    dicom_valid(path, ct_files[0])
    ds, ct = pydicom.dcmread(path), pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    assert ds.Modality == "SEG" and ds.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    back = DicomSource(tmp_path / CASE, labels=FILLED).read(CASE)
    np.testing.assert_array_equal(back.label, label)


def test_all_empty_writes_nothing(shared_data: Path, tmp_path: Path) -> None:
    ct_files = sorted((shared_data / "ibsi_dicom" / CASE / "CT" / "image").glob("*.dcm"))
    label = np.zeros((136, 134, len(ct_files)), dtype=np.uint8)
    assert write_seg(label, ct_files, {1: "GTV_Mass"}, tmp_path / "SEG.dcm") == ["GTV_Mass"]
    assert not (tmp_path / "SEG.dcm").exists()
