"""``hqctf predict`` on NIfTI input: outputs on the input file's own grid, refusals, exported models."""

import hashlib

import nibabel as nib
import numpy as np
import pytest

from hqctf.cli import main
from hqctf.data.nifti import read_nifti
from hqctf.infer.predict import Segmenter, resample_label
from hqctf.train.config import load_config
from hqctf.train.trainer import train_run


@pytest.fixture(scope="module")
def run(tiny_dataset, tiny_overrides, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    train_run(load_config(None, tiny_overrides(tiny_dataset, root / "run", root / "cache", "qpg",
                                               **{"optim.epochs": 1})), progress=False)
    return root / "run"


@pytest.fixture
def inputs(tiny_dataset, tmp_path):
    """Two CT files: one as stored, one with the axes permuted and flipped (KiTS19-style affine)."""
    folder = tmp_path / "in"
    folder.mkdir()
    image, affine = read_nifti(tiny_dataset / "imagesTr" / "pt_4_0000.nii.gz")
    nib.save(nib.Nifti1Image(image, affine), folder / "plain.nii.gz")
    permuted = np.flip(np.transpose(image, (2, 1, 0)), axis=1)
    perm = np.zeros((4, 4))
    perm[:3, :3] = affine[:3, :3][:, [2, 1, 0]]
    perm[:3, 1] *= -1
    perm[:3, 3] = affine[:3, :3] @ np.array([0, image.shape[1] - 1, 0]) + affine[:3, 3]
    perm[3, 3] = 1
    nib.save(nib.Nifti1Image(np.ascontiguousarray(permuted), perm), folder / "permuted.nii.gz")
    return folder


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_outputs_are_on_each_input_grid(run, inputs, tmp_path):
    before = _digest(inputs)
    out = tmp_path / "out"
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(out), "--no-progress"]) == 0
    assert _digest(inputs) == before
    for name in ("plain", "permuted"):
        source = nib.load(inputs / f"{name}.nii.gz")
        result = nib.load(out / f"{name}.nii.gz")
        assert result.shape == source.shape
        np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
    # the same prediction, seen through two storage orders, is the same in the world
    plain = np.asarray(nib.load(out / "plain.nii.gz").dataobj)
    permuted = np.asarray(nib.load(out / "permuted.nii.gz").dataobj)
    np.testing.assert_array_equal(np.transpose(np.flip(permuted, axis=1), (2, 1, 0)), plain)
    assert (out / "volumes.csv").read_text().startswith("case,structure,volume_cc")
    assert (out / "predict.log").is_file()


def test_refuses_output_inside_input_or_over_results(run, inputs, tmp_path, capsys):
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(inputs / "pred"), "--no-progress"]) == 2
    assert "inside the input" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.nii.gz").write_bytes(b"x")
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(out), "--overwrite", "--no-progress"]) == 0
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*nii.gz"))  # no partial files left


def test_single_file_input_with_the_output_folder_beside_it(run, inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(inputs)  # the README form: hqctf predict RUN -i ct.nii.gz -o out/
    assert main(["predict", str(run), "-i", "plain.nii.gz", "-o", "out/", "--no-progress"]) == 0
    assert nib.load(inputs / "out" / "plain.nii.gz").shape == nib.load(inputs / "plain.nii.gz").shape
    assert main(["predict", str(run), "-i", "plain.nii.gz", "-o", "plain.nii.gz", "--overwrite", "--no-progress"]) == 2


def test_missing_input_is_reported_as_not_found(run, tmp_path, capsys):
    missing = tmp_path / "ct.nii.gz"
    assert main(["predict", str(run), "-i", str(missing), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hqctf predict: error: {missing}: not found"
    assert not (tmp_path / "out").exists()


def test_corrupt_input_leaves_no_output_folder(run, inputs, tmp_path, capsys):
    (inputs / "zz_corrupt.nii.gz").write_bytes((inputs / "plain.nii.gz").read_bytes()[:3000])  # read last
    out = tmp_path / "new" / "out"
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "zz_corrupt.nii.gz" in err and "corrupt" in err
    assert not (tmp_path / "new").exists()  # the cases predicted before the failure went with the folder
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(existing), "--no-progress"]) == 2
    assert existing.is_dir()  # a folder that existed before the command is kept


def test_exported_model_predicts_like_the_run(run, inputs, tmp_path):
    from hqctf.train.config import ConfigError

    assert main(["export", str(run), "--format", "torchscript", "-o", str(tmp_path / "exp")]) == 0
    from hqctf.data.nifti_pairs import NiftiPairSource

    case = NiftiPairSource([(inputs / "plain.nii.gz", None)], labels={}).read("plain")
    np.testing.assert_array_equal(Segmenter.load(tmp_path / "exp").predict(case),  # TorchScript: torch
                                  Segmenter.load(run, runtime="torch").predict(case))
    with pytest.raises(ConfigError, match="a TorchScript export runs on torch"):
        Segmenter.load(tmp_path / "exp", runtime="onnxruntime")


def test_resample_label_round_trip_identity():
    label = np.zeros((6, 5, 4), np.uint8)
    label[1:4, 2:4, 1:3] = 3
    affine = np.diag([2.0, 1.5, 3.0, 1.0])
    np.testing.assert_array_equal(resample_label(label, affine, affine, label.shape), label)


@pytest.mark.parametrize("holes", ["keyhole", "nested"])
def test_dicom_input_gets_an_rtstruct_matching_the_nifti(run, shared_data, tmp_path, rt_utils_masks,
                                                         plastimatch_masks, dicom_valid, holes):
    """A DICOM CT series: the RTSTRUCT references the series and rasterises back to the predicted NIfTI, through
    our reader and independently through plastimatch (even-odd, and its default OR for keyholes) and, for the
    default keyholes, rt-utils (slow on the untrained model's jagged contours; test_rtstruct covers both
    encodings with it)."""
    import shutil

    import pydicom

    from hqctf.data.dicom import DicomSource

    series = tmp_path / "STS_019"
    shutil.copytree(shared_data / "ibsi_dicom" / "STS_019" / "CT" / "image", series)  # CT only, no RTSTRUCT
    out = tmp_path / "out"
    assert main(["predict", str(run), "-i", str(series), "-o", str(out), "--no-progress", "--holes", holes,
                 *(["--seg"] if holes == "keyhole" else [])]) == 0
    dicom_valid(out / "STS_019_RTSTRUCT.dcm", next(series.iterdir()))
    rs = pydicom.dcmread(out / "STS_019_RTSTRUCT.dcm")
    ct = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    referenced = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == ct.SeriesInstanceUID
    assert rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ct.FrameOfReferenceUID
    predicted = np.asarray(nib.load(out / "STS_019.nii.gz").dataobj)
    names = {int(r.ROINumber): str(r.ROIName) for r in rs.StructureSetROISequence}
    assert names[3] == "Parotid_R" and names[7] == "Bone_Mandible"  # OpenKBP names written as TG-263
    assert {str(o.RTROIInterpretedType) for o in rs.RTROIObservationsSequence} == {"ORGAN"}
    with_rs = tmp_path / "with_rs"
    shutil.copytree(series, with_rs / "image")
    shutil.copy(out / "STS_019_RTSTRUCT.dcm", with_rs)
    back = DicomSource(with_rs, labels=names, missing="unknown").read("with_rs")
    filled = [name for value, name in names.items() if (predicted == value).any()]
    theirs_all, usable = rt_utils_masks(with_rs / "image", out / "STS_019_RTSTRUCT.dcm",
                                        np.diag([-1.0, -1, 1, 1]) @ back.affine, predicted.shape,
                                        filled) if holes == "keyhole" else ({}, 0)
    plastimatch = [plastimatch_masks(series, out / "STS_019_RTSTRUCT.dcm", back.affine, predicted.shape, filled, xor)
                   for xor in ((True, False) if holes == "keyhole" else (True,))]
    for name in filled:
        for masks in plastimatch:
            np.testing.assert_array_equal(masks[name], predicted == {n: v for v, n in names.items()}[name], name)
    if holes == "keyhole":  # the DICOM-SEG reads back to the NIfTI too
        dicom_valid(out / "STS_019_SEG.dcm", next(series.iterdir()))
        with_seg = tmp_path / "with_seg"
        shutil.copytree(series, with_seg / "image")
        shutil.copy(out / "STS_019_SEG.dcm", with_seg)
        segments = {v: n for v, n in names.items() if n in filled}
        np.testing.assert_array_equal(DicomSource(with_seg, labels=segments).read("with_seg").label,
                                      np.where(np.isin(predicted, list(segments)), predicted, 0))
    log = (out / "predict.log").read_text()
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    scored = 0
    for value, name in names.items():
        mine = predicted == value
        if mine.any():
            assert dice(mine, np.asarray(back.label) == value) >= 0.98, name
            square = mine[:usable, :usable]
            if square.any() and theirs_all:
                assert dice(square, theirs_all[name][:usable, :usable]) >= 0.98, name
                scored += 1
        else:
            assert f"{name} has no contour" in log
    assert scored >= 1 or holes != "keyhole"  # a structure was predicted and checked by rt-utils too


def test_runtimes_agree_and_torch_is_the_default(run, inputs, monkeypatch):
    import sys

    from hqctf.data.nifti_pairs import NiftiPairSource
    from hqctf.infer.predict import _OnnxNet
    from hqctf.train.config import ConfigError

    case = NiftiPairSource([(inputs / "plain.nii.gz", None)], labels={}).read("plain")
    torch_net, ort = Segmenter.load(run, runtime="torch"), Segmenter.load(run, runtime="onnxruntime")
    assert not isinstance(torch_net.net, _OnnxNet) and isinstance(ort.net, _OnnxNet)
    a, b = torch_net.predict(case), ort.predict(case)
    assert (a == b).mean() > 0.999  # the same network; float rounding may flip a near-tied voxel
    assert not isinstance(Segmenter.load(run).net, _OnnxNet)  # torch, though onnxruntime is installed
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # now it is not
    with pytest.raises(ConfigError, match=r'--runtime onnxruntime needs onnxruntime.*pip install "hqctf\[onnx\]"'):
        Segmenter.load(run, runtime="onnxruntime")
