"""``hqctf data inspect`` and ``hqctf data convert`` on real data and on broken copies."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from hqctf.cli import main
from hqctf.data.dicom import DicomSource
from hqctf.data.nnunet import NnUNetSource
from hqctf.data.nifti import read_nifti, write_nifti

IBSI_LABELS = ["--label", "1=GTV_Mass", "--alias", "GTV_Mass=GTV_Mass*"]


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_inspect_dicom_prints_volumes(shared_data, capsys):
    assert main(["data", "inspect", str(shared_data / "ibsi_dicom"), *IBSI_LABELS]) == 0
    out = capsys.readouterr().out
    assert "STS_008" in out and "141x137x51" in out and "27.6" in out and "0 problem(s)" in out


def test_inspect_lists_every_problem_then_fails(shared_data, tmp_path, capsys):
    src = shared_data / "Dataset002_IBSISarcomaGTV"
    root = tmp_path / "Dataset009_Broken"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(src / "dataset.json", root)
    for case in ("STS_008", "STS_019", "STS_025"):
        shutil.copy(src / "imagesTr" / f"{case}_0000.nii.gz", root / "imagesTr")
    shutil.copy(src / "labelsTr" / "STS_008.nii.gz", root / "labelsTr")  # STS_019: label file missing
    label, affine = read_nifti(src / "labelsTr" / "STS_025.nii.gz")
    write_nifti(root / "labelsTr" / "STS_025.nii.gz", np.where(label > 0, 5, 0).astype(np.uint8), affine)
    assert main(["data", "inspect", str(root)]) == 2
    out = capsys.readouterr().out
    assert "2 problem(s) in 2 of 3 case(s)" in out
    assert "STS_019.nii.gz" in out and "STS_025.nii.gz" in out and "[5]" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "inspect", "/no/such/folder"], "/no/such/folder: not found"),
        (["data", "inspect", "{tmp}"], "cannot tell the format"),
        (["data", "convert", "{ibsi}", "{tmp}/out", "--label", "1=Liver"], "lists"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, shared_data, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, ibsi=shared_data / "ibsi_dicom" / "STS_008") for a in argv]
    if message == "lists":
        message = "GTV_Mass_CT"  # the missing ROI's error names the ROIs present
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_convert_dicom_to_nnunet_round_trip(shared_data, tmp_path, capsys):
    src = tmp_path / "STS_019"
    shutil.copytree(shared_data / "ibsi_dicom" / "STS_019", src)
    before = _digest(src)
    out = tmp_path / "Dataset010_IBSI"
    assert main(["data", "convert", str(src), str(out), *IBSI_LABELS]) == 0
    assert _digest(src) == before
    converted = NnUNetSource(out)
    assert converted.labels == {1: "GTV_Mass"} and converted.case_ids() == ["STS_019"]
    original = DicomSource(src, labels={1: "GTV_Mass"}, aliases={"GTV_Mass": ["GTV_Mass*"]}).read("STS_019")
    case = converted.read("STS_019")
    np.testing.assert_array_equal(case.image, original.image)
    np.testing.assert_array_equal(case.label, original.label)
    np.testing.assert_allclose(case.affine, original.affine, atol=1e-4)
    assert main(["data", "convert", str(out), str(out / "imagesTr" / "x")]) == 2  # never write inside the input


def test_split_groups_patients_and_is_deterministic(shared_data, tmp_path, capsys):
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (out_a, out_b):
        assert main(["data", "split", str(shared_data / "kits19_png"), "--folds", "2", "--test-fraction", "0.2",
                     "-o", str(out)]) == 0
    assert out_a.read_text() == out_b.read_text()
    folds = json.loads(out_a.read_text())
    patient = lambda case: case.rsplit("_", 1)[0]  # noqa: E731  kits19_png names slices <patient>_<slice>
    for fold in folds:
        groups = [{patient(c) for c in fold[k]} for k in ("train", "val", "test")]
        assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
        assert len(fold["train"]) + len(fold["val"]) + len(fold["test"]) == 24
    assert main(["data", "split", str(shared_data / "kits19_png"), "--folds", "9", "-o", str(tmp_path / "c.json")]) == 2
    assert "n_folds" in capsys.readouterr().err


def test_inspect_piped_shows_full_names_in_natural_order(tiny_dataset, capsys):
    assert main(["data", "inspect", str(tiny_dataset)]) == 0  # captured: stdout is not a terminal
    out = capsys.readouterr().out
    assert "…" not in out and "LeftParotid (cc)" in out
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("│")]
    assert rows == ["pt_4", "pt_13", "pt_17", "pt_22", "pt_31", "pt_34"]
